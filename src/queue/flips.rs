//! The property the `queue_flips` fuzz target checks, and a unit test over
//! many random inputs: a segment of records with some bytes flipped or
//! overwritten, replayed through a whole queue on [`MemFs`], gives back
//! every record whose bytes were not touched, in order, and nothing that
//! was not written; the queue then counts itself empty, and opening it
//! again replays nothing.
//!
//! The input drives everything: how many records (1 to 12) and what they
//! hold, whether the bytes change before the queue opens (recovery meets
//! them) or while it is open (the reader meets them), the batch limits, up
//! to 16 changes after the segment header (XOR a byte, or write a false
//! sync marker), and, before open, a cut at the end (a torn tail). Header
//! bytes are left alone: a bad header drops the whole file by design.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::record::{encode, SYNC};
use super::segment::{encode_header, segment_name, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};
use super::{FsyncPolicy, MemFs, OnFull, Queue, QueueConfig, Record, RecordKind};
use crate::payload::Payload;

/// The input's bytes, then zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
}

/// Record `i`, shaped by `shape`.
fn record(i: usize, shape: u8) -> Record {
    let line = format!("m,n={i} v={shape}i {i}\n");
    let (kind, body) = match shape & 0x20 {
        0 => (RecordKind::Write, line.repeat(1 + usize::from(shape % 8))),
        _ => (RecordKind::Statement, format!("CREATE DATABASE d{i}")),
    };
    let auth = (shape & 0x40 != 0).then(|| crate::config::Secret::new("Basic dTpw"));
    Record {
        kind,
        accepted_at_ms: i as u64,
        db: String::from("db"),
        rp: String::new(),
        precision: String::from("s"),
        gzip: shape & 0x10 != 0,
        auth,
        body: Payload::from(bytes::Bytes::from(body)),
    }
}

/// The segment as written, and where each record's frame is.
fn segment(records: &[Record]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let mut file = encode_header(SEGMENT_MAGIC, 1).to_vec();
    let mut frames = Vec::new();
    for r in records {
        let start = file.len();
        file.extend_from_slice(&encode(r));
        frames.push(start..file.len());
    }
    (file, frames)
}

/// Applies the input's changes to `file`, marking the bytes touched.
fn change(input: &mut Input<'_>, file: &mut Vec<u8>, touched: &mut [bool], before_open: bool) {
    let header = SEGMENT_HEADER_LEN as usize;
    let area = file.len() - header;
    for _ in 0..16 {
        if input.0.is_empty() {
            break;
        }
        let op = input.byte();
        let at = header + usize::from(input.u16()) % area;
        if op & 0x80 != 0 {
            let end = (at + SYNC.len()).min(file.len());
            file[at..end].copy_from_slice(&SYNC[..end - at]);
            touched[at..end].iter_mut().for_each(|t| *t = true);
        } else {
            file[at] ^= match op & 0x7f {
                0 => 0xff,
                mask => mask,
            };
            touched[at] = true;
        }
    }
    if before_open && input.byte() & 1 == 1 {
        let cut = header + usize::from(input.u16()) % (area + 1);
        file.truncate(cut);
        touched[cut..].iter_mut().for_each(|t| *t = true);
    }
}

/// Reads and commits everything, in batches of the given limits.
fn drain(queue: &Queue, max_bytes: usize, max_records: usize) -> Vec<Record> {
    let mut all = Vec::new();
    for _ in 0..1000 {
        let batch = queue.peek_batch(max_bytes, max_records).expect("peek");
        let Some((last, _)) = batch.last() else {
            return all;
        };
        queue.commit(*last).expect("commit");
        all.extend(batch.into_iter().map(|(_, r)| r));
    }
    panic!("the reader keeps returning records");
}

fn open(fs: &MemFs, dir: &std::path::Path) -> Queue {
    let config = QueueConfig::new(64 << 20, OnFull::Reject, FsyncPolicy::Never);
    Queue::open_with(dir, config, Arc::new(fs.clone())).expect("open")
}

/// Checks the property for one input; panics when it does not hold.
pub fn check(data: &[u8]) {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let mut input = Input(data);
    let count = 1 + usize::from(input.byte()) % 12;
    let records: Vec<Record> = (0..count).map(|i| record(i, input.byte())).collect();
    let mode = input.byte();
    let while_open = mode & 1 == 1;
    let max_records = 1 + usize::from(mode >> 1) % 6;
    let max_bytes = 1 + usize::from(input.u16());
    let (written, frames) = segment(&records);
    let mut file = written.clone();
    let mut touched = vec![false; file.len()];
    change(&mut input, &mut file, &mut touched, !while_open);

    let fs = MemFs::default();
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(format!("/memfs/flips-{}-{run}", std::process::id()));
    let path = dir.join(segment_name(1));
    let queue = if while_open {
        fs.write_file(&path, written);
        let queue = open(&fs, &dir);
        fs.modify(&path, |bytes| *bytes = file);
        queue
    } else {
        fs.write_file(&path, file);
        open(&fs, &dir)
    };
    let got = drain(&queue, max_bytes, max_records);
    let untouched = |i: usize| !touched[frames[i].clone()].contains(&true);
    let wanted: Vec<Vec<u8>> = records.iter().map(encode).collect();
    let mut next = 0;
    for record in &got {
        let bytes = encode(record);
        let Some(i) = (next..count).find(|&i| wanted[i] == bytes) else {
            panic!("a record that was not written, or out of order: {record:?}");
        };
        if let Some(lost) = (next..i).find(|&j| untouched(j)) {
            panic!("record {lost} was not touched, yet it was not replayed");
        }
        next = i + 1;
    }
    if let Some(lost) = (next..count).find(|&j| untouched(j)) {
        panic!("record {lost} was not touched, yet it was not replayed");
    }
    assert!(
        queue.is_empty(),
        "drained, yet not empty: {:?}",
        queue.stats()
    );
    assert_eq!(queue.stats().records, 0);
    drop(queue);
    let again = drain(&open(&fs, &dir), max_bytes, max_records);
    assert!(again.is_empty(), "replayed again after a reopen: {again:?}");
}

/// [`check`] over `cases` inputs from a seeded generator; a failure names
/// the input.
pub fn check_random(seed: u64, cases: usize) {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for case in 0..cases {
        let len = (next() % 160) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            panic!("case {case} of seed {seed} fails: input {data:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flipped_bytes_cost_only_the_records_they_touch_whatever_reads_them() {
        super::check_random(0x9e37_79b9_7f4a_7c15, 3000);
    }

    #[test]
    fn short_inputs_replay_every_record_whole() {
        super::check(&[]);
        super::check(&[5, 1, 2, 3, 4, 5, 6, 1, 0, 40]);
    }
}
