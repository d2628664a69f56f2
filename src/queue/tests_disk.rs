//! A full disk, failing position stores, space given back after a drain,
//! and private files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::position::POSITION_FILE;
use super::segment::segment_name;
use super::tests::{append_all, config, drain, numbers, peek_all, segment_files, write};
use super::*;

fn faulty(dir: &Path) -> (Queue, FaultFs) {
    let fs = FaultFs::new();
    let queue = Queue::open_with(dir, config(1 << 30), Arc::new(fs.clone())).unwrap();
    (queue, fs)
}

/// Waits up to 10 s for `done`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn on_a_full_disk_commits_still_work_and_the_drained_queue_frees_its_space() {
    let dir = TempDir::new().unwrap();
    let (queue, fs) = faulty(dir.path());
    append_all(&queue, 1..=5).await;
    let batch = queue.peek_batch(1 << 20, 2).unwrap();
    queue.commit(batch[1].0).unwrap();
    fs.fill_disk(true);
    let refused = queue.append(write(6)).await;
    assert!(
        matches!(&refused, Err(AppendError::Io(m)) if m.contains("No space left")),
        "{refused:?}"
    );

    let batch = peek_all(&queue);
    assert_eq!(numbers(batch.iter().map(|(_, r)| r)), vec![3, 4, 5]);
    queue.commit(batch[2].0).unwrap();
    assert!(queue.is_empty(), "a drained queue lets writes go direct");
    let stats = queue.stats();
    assert!(!stats.position_persist_failing, "{stats:?}");
    assert_eq!(stats.bytes, 0);
    assert!(
        segment_files(dir.path()).is_empty(),
        "its space is given back"
    );
    drop(queue);

    fs.fill_disk(false);
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert!(drain(&queue, 10).is_empty(), "the position was stored");
}

#[tokio::test]
async fn a_position_that_cannot_be_stored_moves_in_memory_is_reported_and_stored_later() {
    let dir = TempDir::new().unwrap();
    let (queue, fs) = faulty(dir.path());
    append_all(&queue, 1..=4).await;
    fs.fail_next_syncs(1_000);
    let batch = queue.peek_batch(1 << 20, 2).unwrap();
    queue.commit(batch[1].0).unwrap();
    let stats = queue.stats();
    assert!(stats.position_persist_failing);
    let error = stats.position_error.unwrap_or_default();
    assert!(error.contains("injected fsync failure"), "{error}");

    let next = queue.peek_batch(1 << 20, 10).unwrap();
    assert_eq!(
        numbers(next.iter().map(|(_, r)| r)),
        vec![3, 4],
        "the delivered batch is not read again"
    );
    queue.commit(next[1].0).unwrap();
    assert!(queue.is_empty());

    fs.fail_next_syncs(0);
    eventually("the position is stored again", || {
        !queue.stats().position_persist_failing
    });
    assert_eq!(queue.stats().position_error, None);
    drop(queue);
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert!(drain(&queue, 10).is_empty(), "nothing is replayed twice");
}

#[tokio::test]
async fn a_torn_position_write_leaves_the_previous_position() {
    let dir = TempDir::new().unwrap();
    let (queue, fs) = faulty(dir.path());
    append_all(&queue, 1..=4).await;
    let batch = peek_all(&queue);
    queue.commit(batch[0].0).unwrap();
    queue.commit(batch[1].0).unwrap();
    fs.fail_writes_after(20);
    queue.commit(batch[2].0).unwrap();
    assert!(queue.stats().position_persist_failing);
    queue.close();
    drop(queue);

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(numbers(&drain(&queue, 10)), vec![3, 4]);
}

#[tokio::test]
async fn a_queue_opens_on_a_full_disk_and_stores_its_position_once_there_is_room() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=3).await;
    let batch = peek_all(&queue);
    queue.commit(batch[0].0).unwrap();
    drop(queue);
    // the position as the previous release stored it: 28 bytes, replaced whole
    position::store_v1(dir.path(), batch[0].0);

    let fs = FaultFs::new();
    fs.fill_disk(true);
    let queue = Queue::open_with(dir.path(), config(1 << 30), Arc::new(fs.clone())).unwrap();
    assert!(queue.stats().position_persist_failing);
    assert_eq!(numbers(&drain(&queue, 1)), vec![2, 3]);
    assert!(queue.is_empty());
    fs.fill_disk(false);
    eventually("the position is stored", || {
        !queue.stats().position_persist_failing
    });
    let stored = std::fs::metadata(dir.path().join(POSITION_FILE)).unwrap();
    assert_eq!(stored.len(), position::FILE_LEN);
    queue.append(write(4)).await.unwrap();
    drop(queue);
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(numbers(&drain(&queue, 10)), vec![4]);
}

#[tokio::test]
async fn after_a_full_drain_no_segment_with_replayed_records_stays_on_disk() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=3).await;
    let first = peek_all(&queue)[0].0.segment;
    assert_eq!(numbers(&drain(&queue, 2)), vec![1, 2, 3]);
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(queue.stats().bytes, 0);
    append_all(&queue, 4..=4).await;
    let next = peek_all(&queue)[0].0.segment;
    assert!(next > first, "a new segment: {next} after {first}");
    assert!(!dir.path().join(segment_name(first)).exists());
    assert_eq!(numbers(&drain(&queue, 2)), vec![4]);
    drop(queue);
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert!(drain(&queue, 10).is_empty());
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn queue_directories_and_files_are_private_to_the_router_user() {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("buffer").join("main").join("a");
    let queue = Queue::open(&dir, config(1 << 30)).unwrap();
    append_all(&queue, 1..=2).await;
    let batch = peek_all(&queue);
    queue.dead_letter(&batch[0].1, "400: bad").unwrap();
    queue.commit(batch[0].0).unwrap();
    for created in [
        root.path().join("buffer"),
        dir.parent().unwrap().into(),
        dir.clone(),
    ] {
        assert_eq!(mode(&created), 0o700, "{}", created.display());
    }
    let files = [
        segment_files(&dir)[0].clone(),
        dir.join(POSITION_FILE),
        dir.join(dead_letter::DEAD_LETTER_FILE),
    ];
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    drop(queue);

    // made by an older release, or by hand
    set_mode(&dir, 0o755);
    for file in &files {
        set_mode(file, 0o644);
    }
    let queue = Queue::open(&dir, config(1 << 30)).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert_eq!(numbers(&drain(&queue, 10)), vec![2]);
}
