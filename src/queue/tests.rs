use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tempfile::TempDir;

use super::position::{POSITION_FILE, POSITION_TMP};
use super::segment::{segment_name, SEGMENT_HEADER_LEN};
use super::*;
use crate::payload::Payload;

pub(super) fn config(max_size: u64) -> QueueConfig {
    QueueConfig::new(max_size, OnFull::Reject, FsyncPolicy::Batch)
}

pub(super) fn write(n: u64) -> Record {
    Record {
        kind: RecordKind::Write,
        accepted_at_ms: 1_000 + n,
        db: String::from("telegraf"),
        rp: String::new(),
        precision: String::from("ns"),
        gzip: false,
        auth: None,
        body: Payload::from(Bytes::from(format!("cpu v={n}i {n}\n"))),
    }
}

/// A write with a body of `len` bytes.
pub(super) fn big(n: u64, len: usize) -> Record {
    let mut body = format!("cpu v={n}i ").into_bytes();
    body.resize(len, b'x');
    Record {
        body: Payload::from(Bytes::from(body)),
        ..write(n)
    }
}

pub(super) fn body(record: &Record) -> Vec<u8> {
    record.body.to_contiguous().to_vec()
}

/// The numbers of the writes in `records` (from `accepted_at_ms`).
pub(super) fn numbers<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<u64> {
    records
        .into_iter()
        .map(|r| r.accepted_at_ms - 1_000)
        .collect()
}

pub(super) fn peek_all(queue: &Queue) -> Vec<(Position, Record)> {
    queue.peek_batch(usize::MAX, usize::MAX).unwrap()
}

/// Reads and commits everything, in batches of `batch` records.
pub(super) fn drain(queue: &Queue, batch: usize) -> Vec<Record> {
    let mut all = Vec::new();
    loop {
        let records = queue.peek_batch(1 << 20, batch).unwrap();
        let Some((last, _)) = records.last() else {
            return all;
        };
        queue.commit(*last).unwrap();
        all.extend(records.into_iter().map(|(_, r)| r));
    }
}

pub(super) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

pub(super) async fn append_all(queue: &Queue, numbers: impl IntoIterator<Item = u64>) {
    for n in numbers {
        queue.append(write(n)).await.unwrap();
    }
}

#[tokio::test]
async fn records_round_trip_with_every_field() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    let records = vec![
        Record {
            body: Payload::default(),
            ..write(1)
        },
        Record {
            gzip: true,
            body: Payload::from(Bytes::from_static(&[0x1f, 0x8b, 0, 0xff])),
            ..write(2)
        },
        Record {
            db: String::from("mesures_été_東京"),
            rp: String::from("une_semaine"),
            precision: String::new(),
            ..write(3)
        },
        Record {
            body: Payload::from_chunks(vec![
                Bytes::from_static(b"cpu v=1 1\n"),
                Bytes::from_static(b"mem v=2 2\n"),
                Bytes::from_static(b"disk v=3 3\n"),
            ]),
            ..write(4)
        },
        Record {
            kind: RecordKind::Statement,
            db: String::new(),
            precision: String::new(),
            body: Payload::from("CREATE DATABASE \"ünï\""),
            ..write(5)
        },
    ];
    for record in &records {
        queue.append(record.clone()).await.unwrap();
    }
    let read = peek_all(&queue);
    assert_eq!(read.len(), records.len());
    for ((_, got), want) in read.iter().zip(&records) {
        assert_eq!(got.kind, want.kind);
        assert_eq!(got.accepted_at_ms, want.accepted_at_ms);
        assert_eq!(
            (&got.db, &got.rp, &got.precision),
            (&want.db, &want.rp, &want.precision)
        );
        assert_eq!(got.gzip, want.gzip);
        assert_eq!(body(got), body(want));
        assert!(got.body.chunks().len() <= 1, "a read body is one slice");
    }
}

#[tokio::test]
async fn a_torn_tail_is_cut_on_reopen_and_appends_continue_after_it() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=3).await;
    queue.close();
    drop(queue);
    // half of a fourth record, as a crash in the middle of a write leaves it
    let segment = segment_files(dir.path()).pop().unwrap();
    let half = record::encode(&write(4));
    let torn = &half[..half.len() / 2];
    let mut bytes = std::fs::read(&segment).unwrap();
    let whole = bytes.len() as u64;
    bytes.extend_from_slice(torn);
    std::fs::write(&segment, &bytes).unwrap();

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(queue.stats().corrupt_bytes_cut, torn.len() as u64);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), whole);
    assert_eq!(queue.stats().records, 3);
    append_all(&queue, 5..=6).await;
    drop(queue);
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(queue.stats().corrupt_bytes_cut, 0);
    assert_eq!(numbers(&drain(&queue, 2)), vec![1, 2, 3, 5, 6]);
}

#[tokio::test]
async fn replay_keeps_order_across_close_and_reopen_after_a_partial_commit() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=10).await;
    let batch = queue.peek_batch(1 << 20, 4).unwrap();
    assert_eq!(numbers(batch.iter().map(|(_, r)| r)), vec![1, 2, 3, 4]);
    queue.commit(batch[3].0).unwrap();
    queue.close();
    drop(queue);

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(queue.stats().records, 6);
    append_all(&queue, 11..=12).await;
    let batch = queue.peek_batch(1 << 20, 3).unwrap();
    queue.commit(batch[2].0).unwrap();
    drop(queue);

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(numbers(&drain(&queue, 3)), vec![8, 9, 10, 11, 12]);
}

#[tokio::test]
async fn a_full_queue_with_reject_refuses_new_records_and_loses_none() {
    let dir = TempDir::new().unwrap();
    let max = 64 << 10;
    let queue = Queue::open(dir.path(), config(max)).unwrap();
    let mut accepted = Vec::new();
    for n in 1..100 {
        match queue.append(big(n, 4000)).await {
            Ok(()) => accepted.push(n),
            Err(AppendError::Full { max: m }) => {
                assert_eq!(m, max);
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(accepted.len() > 10 && accepted.len() < 20, "{accepted:?}");
    assert!(queue.stats().bytes <= max);
    assert_eq!(queue.stats().dropped, 0);
    assert!(
        matches!(queue.append(write(999)).await, Ok(())),
        "a small one still fits"
    );
    accepted.push(999);
    assert_eq!(numbers(&drain(&queue, 5)), accepted);
    // once replayed, the space is free again
    queue.append(big(1000, 4000)).await.unwrap();
}

#[tokio::test]
async fn a_full_queue_with_drop_oldest_drops_the_oldest_and_keeps_the_newest() {
    let dir = TempDir::new().unwrap();
    let max = 64 << 10;
    let config = QueueConfig::new(max, OnFull::DropOldest, FsyncPolicy::Batch);
    let queue = Queue::open(dir.path(), config).unwrap();
    for n in 1..=100 {
        queue.append(big(n, 4000)).await.unwrap();
        assert!(queue.stats().bytes <= max);
    }
    let stats = queue.stats();
    assert!(stats.dropped > 0);
    assert_eq!(stats.dropped + stats.records, 100);
    let kept = numbers(&drain(&queue, 7));
    assert_eq!(kept.len() as u64, stats.records);
    assert_eq!(kept.last(), Some(&100));
    let first = kept[0];
    assert_eq!(
        kept,
        (first..=100).collect::<Vec<_>>(),
        "the newest, in order"
    );
}

#[tokio::test]
async fn drop_oldest_moves_a_reader_that_was_in_the_middle_of_a_dropped_segment() {
    let dir = TempDir::new().unwrap();
    let config = QueueConfig::new(64 << 10, OnFull::DropOldest, FsyncPolicy::Batch);
    let queue = Queue::open(dir.path(), config).unwrap();
    append_all(&queue, 1..=3).await;
    let batch = peek_all(&queue);
    queue.commit(batch[0].0).unwrap();
    for n in 4..=60 {
        queue.append(big(n, 4000)).await.unwrap();
    }
    queue.commit(batch[2].0).unwrap(); // a stale commit: no harm
    let stats = queue.stats();
    let kept = numbers(&drain(&queue, 100));
    assert_eq!(kept.len() as u64, stats.records);
    assert_eq!(kept.last(), Some(&60));
    assert_eq!(stats.dropped + stats.records + 1, 60);
}

#[tokio::test]
async fn a_record_larger_than_max_size_is_full_whatever_the_policy() {
    let dir = TempDir::new().unwrap();
    for on_full in [OnFull::Reject, OnFull::DropOldest] {
        let dir = dir.path().join(format!("{on_full:?}"));
        let queue =
            Queue::open(&dir, QueueConfig::new(8 << 10, on_full, FsyncPolicy::Batch)).unwrap();
        append_all(&queue, 1..=2).await;
        let result = queue.append(big(3, 9000)).await;
        assert!(
            matches!(result, Err(AppendError::Full { max: 8192 })),
            "{result:?}"
        );
        assert_eq!(queue.stats().records, 2);
        assert_eq!(queue.stats().dropped, 0);
    }
}

#[tokio::test]
async fn a_failed_fsync_is_an_io_error_and_the_record_is_not_queued() {
    let dir = TempDir::new().unwrap();
    let fs = FaultFs::new();
    let queue = Queue::open_with(dir.path(), config(1 << 30), Arc::new(fs.clone())).unwrap();
    append_all(&queue, 1..=2).await;
    fs.fail_next_syncs(1);
    let result = queue.append(write(3)).await;
    let Err(AppendError::Io(message)) = result else {
        panic!("expected an I/O error, got {result:?}");
    };
    assert!(message.contains("injected fsync failure"), "{message}");
    assert!(message.contains(".seg"), "names the file: {message}");
    assert_eq!(queue.stats().records, 2);
    assert_eq!(queue.stats().appended, 2);
    append_all(&queue, 4..=5).await;
    assert_eq!(
        numbers(peek_all(&queue).iter().map(|(_, r)| r)),
        vec![1, 2, 4, 5]
    );
    drop(queue);
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(numbers(&drain(&queue, 10)), vec![1, 2, 4, 5]);
}

#[tokio::test]
async fn a_torn_write_is_an_io_error_and_leaves_no_bytes_between_records() {
    let dir = TempDir::new().unwrap();
    let fs = FaultFs::new();
    let queue = Queue::open_with(dir.path(), config(1 << 30), Arc::new(fs.clone())).unwrap();
    append_all(&queue, 1..=2).await;
    fs.fail_writes_after(10);
    assert!(matches!(
        queue.append(write(3)).await,
        Err(AppendError::Io(_))
    ));
    fs.fail_writes_after(u64::MAX);
    append_all(&queue, 4..=5).await;
    drop(queue);
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(queue.stats().corrupt_bytes_cut, 0);
    assert_eq!(numbers(&drain(&queue, 10)), vec![1, 2, 4, 5]);
}

#[tokio::test]
async fn short_writes_are_carried_on_until_the_record_is_whole() {
    let dir = TempDir::new().unwrap();
    let fs = FaultFs::new();
    fs.limit_writes_to(7);
    let queue = Queue::open_with(dir.path(), config(1 << 30), Arc::new(fs.clone())).unwrap();
    append_all(&queue, 1..=5).await;
    queue.append(big(6, 10_000)).await.unwrap();
    drop(queue);
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    let records = drain(&queue, 10);
    assert_eq!(numbers(&records), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(body(&records[5]), body(&big(6, 10_000)));
}

#[tokio::test]
async fn a_dead_letter_is_written_synced_counted_and_readable_after_reopen() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    queue.append(write(1)).await.unwrap();
    let batch = peek_all(&queue);
    let (position, record) = &batch[0];
    queue
        .dead_letter(record, "answered 400 Bad Request: partial write")
        .unwrap();
    queue.commit(*position).unwrap();
    assert_eq!(queue.stats().dead_letters, 1);
    assert!(queue.is_empty());
    queue.dead_letter(&write(2), &"é".repeat(5000)).unwrap();
    drop(queue);

    let path = dir.path().join(dead_letter::DEAD_LETTER_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"\x40\0\0\0torn");
    std::fs::write(&path, &bytes).unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(queue.stats().corrupt_bytes_cut, 8);
    assert_eq!(queue.stats().dead_letters, 0, "counted since open");
    let letters = queue.read_dead_letters().unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].1, "answered 400 Bad Request: partial write");
    assert_eq!(body(&letters[0].0), body(&write(1)));
    assert_eq!(
        letters[1].1.len(),
        dead_letter::MAX_REASON_LEN,
        "long reasons are cut"
    );
    queue.dead_letter(&write(3), "again").unwrap();
    assert_eq!(queue.read_dead_letters().unwrap().len(), 3);
}

#[tokio::test]
async fn segments_are_deleted_once_committed() {
    let dir = TempDir::new().unwrap();
    let config = QueueConfig {
        segment_size: 16 << 10,
        ..config(1 << 30)
    };
    let queue = Queue::open(dir.path(), config).unwrap();
    for n in 1..=20 {
        queue.append(big(n, 4000)).await.unwrap();
    }
    assert!(segment_files(dir.path()).len() >= 5);
    let batch = queue.peek_batch(12_000, 100).unwrap();
    queue.commit(batch.last().unwrap().0).unwrap();
    let before = segment_files(dir.path()).len();
    assert!(before < 8);
    let batch = queue.peek_batch(12_000, 100).unwrap();
    queue.commit(batch.last().unwrap().0).unwrap();
    let left = segment_files(dir.path());
    assert!(left.len() < before, "{left:?}");
    let on_disk: u64 = left
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(queue.stats().bytes, on_disk);
    drain(&queue, 3);
    let left = segment_files(dir.path());
    assert!(
        left.is_empty(),
        "a drained queue keeps no segment: {left:?}"
    );
    assert_eq!(queue.stats().bytes, 0);
    drop(queue);
    let queue = Queue::open(dir.path(), config).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1, "a new one at open");
    assert_eq!(queue.stats().bytes, SEGMENT_HEADER_LEN);
}

#[tokio::test]
async fn stats_count_bytes_records_and_the_oldest_record_after_append_commit_and_reopen() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    let empty = queue.stats();
    assert_eq!(
        (empty.bytes, empty.records, empty.oldest_accepted_at_ms),
        (16, 0, None)
    );
    append_all(&queue, 1..=3).await;
    let lens: u64 = (1..=3).map(|n| write(n).encoded_len()).sum();
    let stats = queue.stats();
    assert_eq!(
        (stats.bytes, stats.records, stats.appended),
        (16 + lens, 3, 3)
    );
    assert_eq!(stats.oldest_accepted_at_ms, Some(1_001));

    let batch = peek_all(&queue);
    queue.commit(batch[0].0).unwrap();
    let stats = queue.stats();
    assert_eq!((stats.records, stats.replayed), (2, 1));
    assert_eq!(stats.oldest_accepted_at_ms, Some(1_002));
    drop(queue);

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    let stats = queue.stats();
    assert_eq!((stats.records, stats.appended, stats.replayed), (2, 0, 0));
    assert_eq!(stats.oldest_accepted_at_ms, Some(1_002));
    assert_eq!(
        stats.bytes,
        16 + lens + 16,
        "the old segment and the new one"
    );
    let batch = peek_all(&queue);
    queue.commit(batch[1].0).unwrap();
    let stats = queue.stats();
    assert_eq!(
        (stats.records, stats.bytes, stats.oldest_accepted_at_ms),
        (0, 16, None)
    );
}

#[tokio::test]
async fn pending_bytes_are_the_records_left_to_replay_across_segments_and_reopen() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(queue.stats().pending_bytes, 0);
    append_all(&queue, 1..=3).await;
    let len = |n: u64| write(n).encoded_len();
    assert_eq!(queue.stats().pending_bytes, len(1) + len(2) + len(3));
    let batch = peek_all(&queue);
    queue.commit(batch[0].0).unwrap();
    assert_eq!(queue.stats().pending_bytes, len(2) + len(3));
    drop(queue);

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 4..=4).await;
    let stats = queue.stats();
    assert_eq!(
        stats.pending_bytes,
        len(2) + len(3) + len(4),
        "two segments"
    );
    drain(&queue, 10);
    let stats = queue.stats();
    assert_eq!((stats.pending_bytes, stats.records), (0, 0));
    assert_eq!(stats.bytes, 0, "a drained queue gives its space back");
}

#[tokio::test]
async fn each_drop_is_taken_once() {
    let dir = TempDir::new().unwrap();
    let config = QueueConfig::new(64 << 10, OnFull::DropOldest, FsyncPolicy::Batch);
    let queue = Queue::open(dir.path(), config).unwrap();
    let other = queue.clone();
    let mut taken = 0;
    for n in 1..=60 {
        queue.append(big(n, 4000)).await.unwrap();
        taken += if n % 2 == 0 {
            queue.take_drops()
        } else {
            other.take_drops()
        };
    }
    let dropped = queue.stats().dropped;
    assert!(dropped > 0);
    assert_eq!(taken, dropped);
    assert_eq!(queue.take_drops(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_appenders_with_batch_fsync_are_all_acked_and_readable_in_order() {
    const APPENDERS: u64 = 32;
    const EACH: u64 = 40;
    let dir = TempDir::new().unwrap();
    let fs = FaultFs::new();
    let queue = Queue::open_with(dir.path(), config(1 << 30), Arc::new(fs.clone())).unwrap();
    let syncs_before = fs.syncs();
    let mut tasks = Vec::new();
    for appender in 0..APPENDERS {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let record = Record {
                    db: format!("appender{appender}"),
                    ..big(i, 2000)
                };
                queue.append(record).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let syncs = fs.syncs() - syncs_before;
    assert!(syncs < APPENDERS * EACH, "group commit: {syncs} syncs");
    let records = tokio::task::block_in_place(|| drain(&queue, 100));
    assert_eq!(records.len() as u64, APPENDERS * EACH);
    for appender in 0..APPENDERS {
        let db = format!("appender{appender}");
        let mine = numbers(records.iter().filter(|r| r.db == db));
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>(), "{db}");
    }
}

#[tokio::test]
async fn every_fsync_policy_keeps_what_it_acked_across_reopen() {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
        let dir = TempDir::new().unwrap();
        let config = QueueConfig::new(1 << 30, OnFull::Reject, fsync);
        let queue = Queue::open(dir.path(), config).unwrap();
        append_all(&queue, 1..=5).await;
        queue.close();
        assert!(matches!(
            queue.append(write(6)).await,
            Err(AppendError::Closed)
        ));
        drop(queue);
        let queue = Queue::open(dir.path(), config).unwrap();
        assert_eq!(numbers(&drain(&queue, 2)), vec![1, 2, 3, 4, 5], "{fsync:?}");
    }
}

#[tokio::test]
async fn is_empty_follows_appends_and_commits_and_appended_wakes_a_waiter() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert!(queue.is_empty());
    let woken = queue.appended();
    let appender = queue.clone();
    tokio::spawn(async move { appender.append(write(1)).await.unwrap() });
    tokio::time::timeout(std::time::Duration::from_secs(5), woken)
        .await
        .unwrap();
    assert!(!queue.is_empty());
    let batch = peek_all(&queue);
    assert_eq!(batch.len(), 1);
    assert!(!queue.is_empty(), "peeking does not commit");
    queue.commit(batch[0].0).unwrap();
    assert!(queue.is_empty());
}

#[tokio::test]
async fn peek_batch_keeps_to_its_limits_but_always_returns_one_record() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    queue.append(big(1, 5000)).await.unwrap();
    append_all(&queue, 2..=9).await;
    let one = queue.peek_batch(10, 100).unwrap();
    assert_eq!(numbers(one.iter().map(|(_, r)| r)), vec![1]);
    let small = write(2).encoded_len() as usize;
    let some = queue
        .peek_batch(big(1, 5000).encoded_len() as usize + 2 * small, 100)
        .unwrap();
    assert_eq!(numbers(some.iter().map(|(_, r)| r)), vec![1, 2, 3]);
    let counted = queue.peek_batch(1 << 20, 4).unwrap();
    assert_eq!(counted.len(), 4);
    assert_eq!(peek_all(&queue).len(), 9, "nothing moved");
}

#[tokio::test]
async fn a_read_position_in_a_missing_segment_moves_to_the_next_record() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=3).await;
    let first = peek_all(&queue);
    drop(queue);
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 4..=6).await;
    queue.commit(first[0].0).unwrap();
    drop(queue);
    std::fs::remove_file(dir.path().join(segment_name(first[0].0.segment))).unwrap();

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(queue.stats().records, 3);
    assert_eq!(numbers(&drain(&queue, 10)), vec![4, 5, 6]);
}

#[tokio::test]
async fn a_damaged_or_half_written_read_position_replays_everything() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=3).await;
    let batch = peek_all(&queue);
    queue.commit(batch[0].0).unwrap();
    drop(queue);
    std::fs::write(dir.path().join(POSITION_FILE), b"garbage").unwrap();
    std::fs::write(dir.path().join(POSITION_TMP), b"half").unwrap();

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert!(!dir.path().join(POSITION_TMP).exists());
    assert_eq!(numbers(&drain(&queue, 10)), vec![1, 2, 3]);
}

#[tokio::test]
async fn a_read_position_between_records_replays_from_the_record_before() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=3).await;
    let batch = peek_all(&queue);
    drop(queue);
    let inside = Position {
        offset: batch[1].0.offset - 3,
        ..batch[1].0
    };
    let mut store = position::Store::default();
    store.save(&RealFs, dir.path(), inside).unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(numbers(&drain(&queue, 10)), vec![2, 3]);
}

#[tokio::test]
async fn commit_accepts_older_batches_and_refuses_positions_that_are_not_record_ends() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=6).await;
    let old = peek_all(&queue);
    let _newer = queue.peek_batch(1 << 20, 1).unwrap();
    queue.commit(old[2].0).unwrap(); // not in the last batch: walked on disk
    assert_eq!(queue.stats().records, 3);
    assert_eq!(queue.stats().oldest_accepted_at_ms, Some(1_004));
    let bad = Position {
        offset: old[4].0.offset - 1,
        ..old[4].0
    };
    assert!(matches!(queue.commit(bad), Err(QueueError::BadPosition(_))));
    let beyond = Position {
        segment: old[0].0.segment + 7,
        offset: 100,
    };
    assert!(matches!(
        queue.commit(beyond),
        Err(QueueError::BadPosition(_))
    ));
    queue.commit(old[0].0).unwrap(); // behind the read position: nothing to do
    assert_eq!(numbers(&drain(&queue, 10)), vec![4, 5, 6]);
}

#[tokio::test]
async fn a_segment_with_a_bad_header_is_removed_and_counted() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=2).await;
    drop(queue);
    let segment = segment_files(dir.path()).pop().unwrap();
    let size = std::fs::metadata(&segment).unwrap().len();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[0] = b'X';
    std::fs::write(&segment, &bytes).unwrap();
    std::fs::write(dir.path().join(segment_name(1_000)), b"IRQ").unwrap();

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(queue.stats().corrupt_bytes_cut, size + 3);
    assert!(!segment.exists());
    assert!(queue.peek_batch(1 << 20, 10).unwrap().is_empty());
    queue.append(write(3)).await.unwrap();
    let next = peek_all(&queue)[0].0.segment;
    assert!(next > 1_000, "sequence numbers only grow: {next}");
}

#[test]
fn the_default_segment_size_is_a_sixteenth_of_max_size_within_bounds() {
    let size = |max| QueueConfig::new(max, OnFull::Reject, FsyncPolicy::Batch).segment_size;
    assert_eq!(size(1 << 30), 64 << 20);
    assert_eq!(size(256 << 20), 16 << 20);
    assert_eq!(size(1 << 20), 1 << 20);
    assert_eq!(size(64 << 30), 64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_draining_while_appenders_append_sees_every_record_once_in_order() {
    const APPENDERS: u64 = 8;
    const EACH: u64 = 300;
    let dir = TempDir::new().unwrap();
    let config = QueueConfig {
        segment_size: 64 << 10,
        ..config(1 << 30)
    };
    let queue = Queue::open(dir.path(), config).unwrap();
    let reader = {
        let queue = queue.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while (seen.len() as u64) < APPENDERS * EACH {
                let batch = queue.peek_batch(16 << 10, 50).unwrap();
                if let Some((last, _)) = batch.last() {
                    queue.commit(*last).unwrap();
                }
                seen.extend(batch.into_iter().map(|(_, r)| r));
            }
            seen
        })
    };
    let mut tasks = Vec::new();
    for appender in 0..APPENDERS {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let record = Record {
                    db: format!("appender{appender}"),
                    ..big(i, 300)
                };
                queue.append(record).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let seen = tokio::task::block_in_place(|| reader.join().unwrap());
    for appender in 0..APPENDERS {
        let db = format!("appender{appender}");
        let mine = numbers(seen.iter().filter(|r| r.db == db));
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>(), "{db}");
    }
    assert!(queue.is_empty());
    assert_eq!(queue.stats().records, 0);
    assert!(segment_files(dir.path()).is_empty());
}

#[tokio::test]
async fn opening_a_directory_that_is_open_gives_the_same_queue() {
    let dir = TempDir::new().unwrap();
    let first = Queue::open(dir.path(), config(1 << 30)).unwrap();
    let second = Queue::open(&dir.path().join("."), config(1 << 20)).unwrap();
    first.append(write(1)).await.unwrap();
    second.append(write(2)).await.unwrap();
    assert_eq!(numbers(peek_all(&first).iter().map(|(_, r)| r)), vec![1, 2]);
    assert_eq!(second.stats().records, 2);
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "one writer, one segment"
    );

    first.close();
    let third = Queue::open(dir.path(), config(1 << 30)).unwrap();
    third.append(write(3)).await.unwrap();
    drop((first, second));
    assert_eq!(numbers(&drain(&third, 10)), vec![1, 2, 3]);
}

#[tokio::test]
async fn a_peek_while_an_append_is_on_its_way_waits_for_it() {
    let dir = TempDir::new().unwrap();
    let fs = FaultFs::new();
    let queue = Queue::open_with(dir.path(), config(1 << 30), Arc::new(fs.clone())).unwrap();
    let appender = queue.clone();
    let append = tokio::spawn(async move { appender.append(write(1)).await });
    while queue.is_empty() {
        tokio::task::yield_now().await;
    }
    let batch = queue.peek_batch(1 << 20, 10).unwrap();
    assert_eq!(batch.len(), 1, "found the record being appended");
    append.await.unwrap().unwrap();
}

#[test]
fn a_queue_handle_can_be_shared_between_threads_and_tasks() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Queue>();
}

#[tokio::test]
async fn committing_record_by_record_counts_each_once() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=5).await;
    let batch = peek_all(&queue);
    for (i, (position, _)) in batch.iter().enumerate() {
        queue.commit(*position).unwrap();
        queue.commit(*position).unwrap();
        assert_eq!(queue.stats().records, 4 - i as u64);
        assert_eq!(queue.stats().replayed, i as u64 + 1);
    }
    assert!(queue.is_empty());
}
