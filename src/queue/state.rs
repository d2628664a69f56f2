//! What the writer thread and the reader share: the list of live segments
//! with their published lengths and record counts, the read position, and
//! the counters.
//!
//! Everything here is bookkeeping in memory under one short lock; no file
//! I/O happens while [`State`] is locked (removals are returned to the caller
//! to do after unlocking). Storing the read position has its own lock.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::fs::Filesystem;
use super::position;
use super::record::Format;
use super::segment::{segment_name, SEGMENT_HEADER_LEN};
use super::{Position, QueueConfig};

/// One live segment as the queue knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    pub seq: u64,
    /// Bytes readers may read: header and whole, durable records.
    pub len: u64,
    /// Records in it not committed yet.
    pub records_left: u64,
    /// When the first of those was accepted.
    pub head_accepted_at_ms: Option<u64>,
    /// The frame layout of its records.
    pub format: Format,
    /// Corrupt stretches after the read position that the reader steps
    /// over, ascending (already counted, logged and kept aside).
    pub skips: Vec<(u64, u64)>,
    /// Records published in it so far (only differences matter).
    pub published: u64,
}

impl SegmentMeta {
    /// A segment holding `records_left` records to replay in `len` bytes.
    pub fn new(seq: u64, len: u64, records_left: u64, format: Format) -> SegmentMeta {
        SegmentMeta {
            seq,
            len,
            records_left,
            head_accepted_at_ms: None,
            format,
            skips: Vec::new(),
            published: records_left,
        }
    }
}

/// A segment as the reader sees it at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentView {
    /// Where to read: the asked position, or the start of the next segment.
    pub at: Position,
    pub len: u64,
    /// No more records will be added to it.
    pub sealed: bool,
    pub format: Format,
    /// The first corrupt stretch ending after `at`.
    pub skip: Option<(u64, u64)>,
    /// [`SegmentMeta::published`] at this moment.
    pub published: u64,
}

/// A snapshot of a queue's size and counters (counters since open).
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    /// Bytes of the live segment files.
    pub bytes: u64,
    /// Bytes of the records not committed yet (frames included); 0 when
    /// `records` is 0, while `bytes` keeps the active segment's size.
    pub pending_bytes: u64,
    /// Records not committed yet.
    pub records: u64,
    /// When the first of those was accepted.
    pub oldest_accepted_at_ms: Option<u64>,
    pub appended: u64,
    /// Records committed.
    pub replayed: u64,
    /// Records dropped by `on_full = drop-oldest`.
    pub dropped: u64,
    pub dead_letters: u64,
    /// Bytes cut or skipped as torn or corrupt (at open and while reading).
    pub corrupt_bytes_cut: u64,
    /// Corrupt stretches (usually one record each) skipped inside segments,
    /// each kept aside in a `corrupt-<segment>-<offset>.bin` file.
    pub corrupt_regions_skipped: u64,
    /// The read position could not be stored the last time it was tried:
    /// replay goes on from memory, but a crash now would replay again what
    /// was replayed since the last stored position.
    pub position_persist_failing: bool,
    /// Why, while it is failing.
    pub position_error: Option<String>,
}

#[derive(Debug, Default)]
pub struct State {
    /// Ascending by sequence; the last one is the one being written.
    pub segments: VecDeque<SegmentMeta>,
    /// Just after the last committed record.
    pub read: Position,
    /// Sum of the segments' `len`.
    pub bytes: u64,
    /// Sum of the segments' `records_left`.
    pub records: u64,
}

/// Counters since the queue was opened.
#[derive(Debug, Default)]
pub struct Counters {
    pub appended: AtomicU64,
    pub replayed: AtomicU64,
    pub dropped: AtomicU64,
    pub dead_letters: AtomicU64,
    pub corrupt_bytes_cut: AtomicU64,
    pub corrupt_regions_skipped: AtomicU64,
    /// Records dropped and not yet taken by [`super::Queue::take_drops`].
    pub drops_untaken: AtomicU64,
}

/// Shared by the handles, the writer thread and the reader.
pub struct Shared {
    pub dir: PathBuf,
    pub fs: Arc<dyn Filesystem>,
    pub config: QueueConfig,
    pub state: Mutex<State>,
    /// Records appended (or being appended) and not committed or dropped.
    pub backlog: AtomicU64,
    /// Woken whenever records become readable: tasks, and blocked readers.
    pub appended: Notify,
    pub published: Condvar,
    pub counters: Counters,
    /// The read position file.
    pub position: Mutex<position::Store>,
    /// Why the read position could not be stored, while it cannot.
    pub position_error: Mutex<Option<String>>,
    /// `position_error` is set (read without a lock).
    pub position_failing: AtomicBool,
}

impl Shared {
    /// The state, even if a thread panicked while holding it (the data is
    /// plain counters and a list, always consistent between statements).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits up to `timeout` for records to become readable, unless some
    /// are already or none are on their way.
    pub fn wait_for_records(&self, timeout: std::time::Duration) {
        let state = self.lock();
        if state.records == 0 && self.backlog.load(Ordering::SeqCst) > 0 {
            let waited = self.published.wait_timeout(state, timeout);
            drop(waited);
        }
    }

    pub fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(segment_name(seq))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records left the queue without being committed.
    pub fn forget_records(&self, records: u64) {
        let _ = self
            .backlog
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(records))
            });
    }

    /// Stores the in-memory read position. A failure is logged when a streak
    /// starts, kept for [`Shared::stats`], and retried by the next commit or
    /// [`Shared::retry_position`]; the position in memory moves on anyway.
    pub fn store_position(&self) {
        let mut store = lock(&self.position);
        let read = self.lock().read;
        let stored = store.save(self.fs.as_ref(), &self.dir, read);
        drop(store);
        let mut error = lock(&self.position_error);
        let dir = self.dir.display();
        match stored {
            Ok(()) if error.take().is_some() => {
                tracing::info!(queue = %dir, "queue read position stored again");
            }
            Ok(()) => {}
            Err(e) => {
                let message = e.to_string();
                match error.is_none() {
                    true => {
                        tracing::error!(queue = %dir, error = %message, "cannot store the queue read position; replay goes on, and records already replayed would be sent again after a crash")
                    }
                    false => {
                        tracing::debug!(queue = %dir, error = %message, "cannot store the queue read position yet")
                    }
                }
                *error = Some(message);
            }
        }
        self.position_failing
            .store(error.is_some(), Ordering::SeqCst);
    }

    /// Stores the read position again if the last attempt failed.
    pub fn retry_position(&self) {
        if self.position_failing.load(Ordering::SeqCst) {
            self.store_position();
        }
    }

    /// Removes segment files the state no longer lists.
    pub fn remove_segments(&self, gone: &[SegmentMeta]) {
        for seg in gone {
            let path = self.segment_path(seg.seq);
            match self.fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove queue segment");
                }
            }
        }
    }

    pub fn stats(&self) -> QueueStats {
        let state = self.lock();
        let oldest = state.segments.iter().find(|s| s.records_left > 0);
        let c = &self.counters;
        QueueStats {
            bytes: state.bytes,
            pending_bytes: state.pending_bytes(),
            records: state.records,
            oldest_accepted_at_ms: oldest.and_then(|s| s.head_accepted_at_ms),
            appended: c.appended.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            dead_letters: c.dead_letters.load(Ordering::Relaxed),
            corrupt_bytes_cut: c.corrupt_bytes_cut.load(Ordering::Relaxed),
            corrupt_regions_skipped: c.corrupt_regions_skipped.load(Ordering::Relaxed),
            position_persist_failing: self.position_failing.load(Ordering::SeqCst),
            position_error: lock(&self.position_error).clone(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    /// Bytes of the records after the read position (frames included):
    /// what is left to replay, 0 when the queue is empty.
    pub fn pending_bytes(&self) -> u64 {
        let read = self.read;
        self.segments
            .iter()
            .map(|seg| match seg.seq.cmp(&read.segment) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Equal => {
                    seg.len.saturating_sub(read.offset.max(SEGMENT_HEADER_LEN))
                }
                std::cmp::Ordering::Greater => seg.len.saturating_sub(SEGMENT_HEADER_LEN),
            })
            .sum()
    }

    pub fn segment_mut(&mut self, seq: u64) -> Option<&mut SegmentMeta> {
        self.segments.iter_mut().find(|s| s.seq == seq)
    }

    /// The segment to read at `pos`: its own, or the next one that exists.
    pub fn locate(&self, pos: Position) -> Option<SegmentView> {
        let last = self.segments.back()?.seq;
        let seg = self.segments.iter().find(|s| s.seq >= pos.segment)?;
        let at = if seg.seq == pos.segment {
            pos.max(Position::start_of(seg.seq))
        } else {
            Position::start_of(seg.seq)
        };
        let sealed = seg.seq != last;
        let skip = seg.skips.iter().find(|(_, end)| *end > at.offset).copied();
        Some(SegmentView {
            at,
            len: seg.len,
            sealed,
            format: seg.format,
            skip,
            published: seg.published,
        })
    }

    /// Takes sealed segments that hold nothing uncommitted out of the list.
    pub fn take_consumed(&mut self) -> Vec<SegmentMeta> {
        let mut gone = Vec::new();
        while self.segments.len() > 1 {
            let front = &self.segments[0];
            let behind = front.seq < self.read.segment
                || (front.seq == self.read.segment && self.read.offset >= front.len);
            if !behind {
                break;
            }
            if let Some(seg) = self.pop_front() {
                gone.push(seg);
            }
        }
        gone
    }

    /// Takes every segment out of the list once nothing in any of them is
    /// left to replay (the one being written included).
    pub fn take_all_replayed(&mut self) -> Vec<SegmentMeta> {
        if self.records > 0 || self.segments.iter().any(|s| s.records_left > 0) {
            return Vec::new();
        }
        self.bytes = 0;
        self.segments.drain(..).collect()
    }

    /// Takes the oldest sealed segment out of the list, moving the read
    /// position past it.
    pub fn take_oldest_sealed(&mut self) -> Option<SegmentMeta> {
        if self.segments.len() < 2 {
            return None;
        }
        let seg = self.pop_front()?;
        let next = Position::start_of(self.segments.front()?.seq);
        self.read = self.read.max(next);
        Some(seg)
    }

    fn pop_front(&mut self) -> Option<SegmentMeta> {
        let seg = self.segments.pop_front()?;
        self.bytes = self.bytes.saturating_sub(seg.len);
        self.records = self.records.saturating_sub(seg.records_left);
        Some(seg)
    }
}

impl Position {
    /// Before the first record of segment `seq`.
    pub fn start_of(seq: u64) -> Position {
        Position {
            segment: seq,
            offset: SEGMENT_HEADER_LEN,
        }
    }
}
