//! What the writer thread and the reader share: the list of live segments
//! with their published lengths and record counts, the read position, and
//! the counters.
//!
//! Everything here is bookkeeping in memory under one short lock; no file
//! I/O happens while [`State`] is locked (removals are returned to the caller
//! to do after unlocking).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::fs::Filesystem;
use super::segment::{segment_name, SEGMENT_HEADER_LEN};
use super::{Position, QueueConfig, QueueStats};

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
}

/// A segment as the reader sees it at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentView {
    /// Where to read: the asked position, or the start of the next segment.
    pub at: Position,
    pub len: u64,
    /// No more records will be added to it.
    pub sealed: bool,
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
        }
    }
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
        Some(SegmentView {
            at,
            len: seg.len,
            sealed,
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
