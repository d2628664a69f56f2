//! A corrupt record costs that record only: at open, while reading, in its
//! length or in its body; a torn tail is still cut; version-1 files are
//! still read.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::corrupt::kept_name;
use super::record::{Format, LEN_AT};
use super::segment::{segment_name, SEGMENT_HEADER_LEN};
use super::tests::{append_all, body, config, drain, numbers, peek_all, write};
use super::*;

/// Where one record's frame is.
#[derive(Debug, Clone, Copy)]
struct Frame {
    segment: u64,
    start: u64,
    end: u64,
}

/// The frames of everything readable now (one segment).
fn frames(queue: &Queue) -> Vec<Frame> {
    let mut start = SEGMENT_HEADER_LEN;
    let mut frames = Vec::new();
    for (end, _) in peek_all(queue) {
        frames.push(Frame {
            segment: end.segment,
            start,
            end: end.offset,
        });
        start = end.offset;
    }
    frames
}

fn segment_path(dir: &Path, frame: Frame) -> PathBuf {
    dir.join(segment_name(frame.segment))
}

/// XORs the byte at `at` of `path` with `mask`; returns the file as it is now.
fn flip(path: &Path, at: u64, mask: u8) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= mask;
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// A body byte of `frame` ("cpu v=3i 3\n": the last digit), which only the
/// CRC can tell was changed.
fn body_byte(frame: Frame) -> u64 {
    frame.end - 2
}

fn assert_kept(dir: &Path, frame: Frame, file: &[u8]) {
    let kept = std::fs::read(dir.join(kept_name(frame.segment, frame.start))).unwrap();
    assert_eq!(kept, &file[frame.start as usize..frame.end as usize]);
}

#[tokio::test]
async fn one_corrupt_record_found_at_open_is_skipped_alone_and_the_records_after_it_replayed() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=6).await;
    let third = frames(&queue)[2];
    drop(queue);
    let file = flip(&segment_path(dir.path(), third), body_byte(third), 0x01);

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    let stats = queue.stats();
    assert_eq!(stats.records, 5);
    assert_eq!(stats.corrupt_bytes_cut, third.end - third.start);
    assert_eq!(stats.corrupt_regions_skipped, 1);
    assert_kept(dir.path(), third, &file);
    assert_eq!(numbers(&drain(&queue, 2)), vec![1, 2, 4, 5, 6]);
    assert!(queue.is_empty());
    drop(queue);

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert!(drain(&queue, 10).is_empty(), "nothing is replayed twice");
}

#[tokio::test]
async fn a_corrupt_length_field_costs_only_its_own_record() {
    // one off, 64 KiB more (past the end of the file), 1 GiB more (out of range)
    for (byte, mask) in [(0, 0x01), (2, 0x01), (3, 0x40)] {
        let dir = TempDir::new().unwrap();
        let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
        append_all(&queue, 1..=6).await;
        let third = frames(&queue)[2];
        drop(queue);
        let at = third.start + LEN_AT as u64 + byte;
        let file = flip(&segment_path(dir.path(), third), at, mask);

        let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
        let stats = queue.stats();
        assert_eq!(stats.corrupt_bytes_cut, third.end - third.start, "{byte}");
        assert_eq!(stats.corrupt_regions_skipped, 1, "{byte}");
        assert_kept(dir.path(), third, &file);
        assert_eq!(numbers(&drain(&queue, 10)), vec![1, 2, 4, 5, 6], "{byte}");
    }
}

#[tokio::test]
async fn a_record_corrupted_while_the_queue_is_open_is_skipped_alone() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=6).await;
    let third = frames(&queue)[2];
    let file = flip(&segment_path(dir.path(), third), body_byte(third), 0x01);

    assert_eq!(numbers(&drain(&queue, 10)), vec![1, 2, 4, 5, 6]);
    let stats = queue.stats();
    assert_eq!((stats.records, stats.replayed), (0, 5));
    assert_eq!(stats.corrupt_bytes_cut, third.end - third.start);
    assert_eq!(stats.corrupt_regions_skipped, 1);
    assert!(queue.is_empty());
    assert_kept(dir.path(), third, &file);
    append_all(&queue, 7..=7).await;
    assert_eq!(numbers(&drain(&queue, 10)), vec![7]);
    drop(queue);

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert!(drain(&queue, 10).is_empty(), "nothing is replayed twice");
}

#[tokio::test]
async fn a_corrupt_length_found_while_reading_costs_only_its_own_record() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=6).await;
    let frames = frames(&queue);
    let first = queue.peek_batch(1 << 20, 2).unwrap();
    queue.commit(first[1].0).unwrap();
    let third = frames[2];
    flip(
        &segment_path(dir.path(), third),
        third.start + LEN_AT as u64 + 2,
        0x01,
    );

    assert_eq!(numbers(&drain(&queue, 1)), vec![4, 5, 6]);
    assert_eq!(queue.stats().corrupt_regions_skipped, 1);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn a_torn_tail_after_a_corrupt_record_is_cut_and_the_records_between_replayed() {
    let dir = TempDir::new().unwrap();
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    append_all(&queue, 1..=4).await;
    let second = frames(&queue)[1];
    queue.close();
    drop(queue);
    let path = segment_path(dir.path(), second);
    flip(&path, body_byte(second), 0x01);
    let half = record::encode(&write(5));
    let mut bytes = std::fs::read(&path).unwrap();
    let whole = bytes.len() as u64;
    bytes.extend_from_slice(&half[..half.len() - 3]);
    std::fs::write(&path, &bytes).unwrap();

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole, "tail cut");
    let skipped = second.end - second.start;
    let torn = half.len() as u64 - 3;
    assert_eq!(queue.stats().corrupt_bytes_cut, skipped + torn);
    assert_eq!(
        queue.stats().corrupt_regions_skipped,
        1,
        "the tail is no region"
    );
    assert_eq!(numbers(&drain(&queue, 10)), vec![1, 3, 4]);
}

/// A version-1 segment: its header and frames as the previous release wrote them.
fn v1_segment(seq: u64, records: &[Record]) -> Vec<u8> {
    let mut bytes = b"IRQS".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    for r in records {
        record::encode_into(r, None, Format::V1, &mut bytes);
    }
    bytes
}

#[tokio::test]
async fn a_version_1_segment_and_read_position_are_still_read() {
    let dir = TempDir::new().unwrap();
    let records: Vec<Record> = (1..=3).map(write).collect();
    let seg = v1_segment(5, &records);
    std::fs::write(dir.path().join(segment_name(5)), &seg).unwrap();
    let after_first = SEGMENT_HEADER_LEN + 8 + (records[0].encoded_len() - 12);
    let mut pos = b"IRQP".to_vec();
    pos.extend_from_slice(&1u32.to_le_bytes());
    pos.extend_from_slice(&5u64.to_le_bytes());
    pos.extend_from_slice(&after_first.to_le_bytes());
    let crc = crc32fast::hash(&pos);
    pos.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.path().join(position::POSITION_FILE), &pos).unwrap();

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(queue.stats().records, 2);
    let read = drain(&queue, 10);
    assert_eq!(numbers(&read), vec![2, 3]);
    assert_eq!(body(&read[0]), body(&records[1]));
    queue.append(write(4)).await.unwrap();
    let new = peek_all(&queue)[0].0.segment;
    assert!(new > 5);
    let header = std::fs::read(dir.path().join(segment_name(new))).unwrap();
    assert_eq!(
        header[4..8],
        2u32.to_le_bytes(),
        "new segments are version 2"
    );
    assert_eq!(numbers(&drain(&queue, 10)), vec![4]);
}

#[tokio::test]
async fn a_corrupt_record_in_a_version_1_segment_cuts_the_rest_of_it_as_before() {
    let dir = TempDir::new().unwrap();
    let records: Vec<Record> = (1..=3).map(write).collect();
    let mut seg = v1_segment(5, &records);
    let second_end = SEGMENT_HEADER_LEN + 2 * (records[0].encoded_len() - 4);
    seg[second_end as usize - 2] ^= 0x01;
    std::fs::write(dir.path().join(segment_name(5)), &seg).unwrap();

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(queue.stats().corrupt_regions_skipped, 0);
    assert_eq!(numbers(&drain(&queue, 10)), vec![1]);
}

#[tokio::test]
async fn a_version_1_dead_letter_file_is_still_read_and_appended_to() {
    let dir = TempDir::new().unwrap();
    let mut file = b"IRQD".to_vec();
    file.extend_from_slice(&1u32.to_le_bytes());
    file.extend_from_slice(&0u64.to_le_bytes());
    record::encode_into(&write(1), Some("400: old"), Format::V1, &mut file);
    let path = dir.path().join(dead_letter::DEAD_LETTER_FILE);
    std::fs::write(&path, &file).unwrap();

    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    queue.dead_letter(&write(2), "400: new").unwrap();
    drop(queue);
    let queue = Queue::open(dir.path(), config(1 << 30)).unwrap();
    assert_eq!(queue.stats().corrupt_bytes_cut, 0);
    let letters = queue.read_dead_letters().unwrap();
    let reasons: Vec<&str> = letters.iter().map(|(_, why)| why.as_str()).collect();
    assert_eq!(reasons, vec!["400: old", "400: new"]);
    assert_eq!(numbers(letters.iter().map(|(r, _)| r)), vec![1, 2]);
}
