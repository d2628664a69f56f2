//! The durable per-node queue (hinted handoff): writes and admin statements
//! a node could not take now, kept on disk in the order the router accepted
//! them until the node's replayer has delivered them.
//!
//! It owns the files in one directory (`<buffer.dir>/<cluster>/<node>/`).
//! It never talks to a node, never interprets a body, and never keeps
//! records in memory beyond the batch being written or read. One process
//! opens a directory at a time.
//!
//! # Files
//!
//! ```text
//! 00000000000000000007.seg   segments: records in append order, named by a
//! 00000000000000000008.seg   sequence number (20 digits, so names sort)
//! read-position              where replay resumes (see below)
//! dead-letter.log            records a node refused for good, with the reason
//! dead-letter.old.log        the previous dead-letter file, after rotation
//! corrupt-<seq>-<offset>.bin the bytes of a corrupt record skipped at that
//!                            offset of that segment, as they were on disk
//! ```
//!
//! Records carry the client's credentials, so the directory is made `0700`
//! and every file `0600` when created; at open, the directory and the
//! queue's files lose any group or other permission an older release (or a
//! hand) gave them. Parent directories the queue creates are `0700` too;
//! existing ones are left as they are.
//!
//! A segment starts with a 16-byte header: magic `IRQS`, format version
//! (u32), its own sequence number (u64). Then records, back to back. New
//! segments are version 2; version-1 segments (the first release) are still
//! read, with that release's rules. Records are appended to the newest
//! segment only; a new segment is started when the next record would take
//! the current one past `min(segment_size, max_size / 4)` (a record bigger
//! than that gets a segment of its own), when the queue is opened, after a
//! failed write, and after a commit that left nothing to replay (which
//! removes every segment).
//!
//! # Record format (all integers little-endian)
//!
//! ```text
//! u8[4] sync           ff 51 52 fe: marks where a frame starts
//! u32  len             bytes after this 12-byte frame header; 22 ..= 1 GiB
//! u32  crc             CRC-32 (IEEE) of the 4 len bytes, then those len bytes
//! u8   kind            1 = write, 2 = statement (InfluxQL to POST as /query),
//!                      3 = Prometheus remote write (snappy protobuf to POST
//!                      as /api/v1/prom/write; a release before it calls
//!                      such a record corrupt)
//! u8   flags           bit 0: body is gzip; bit 1: reason follows (dead
//!                      letters only); bit 2: credentials follow; other
//!                      bits must be 0
//! u64  accepted_at_ms  unix ms when the router accepted it
//! u32 + bytes          db, UTF-8 ("" allowed)
//! u32 + bytes          rp, UTF-8 ("" = none)
//! u32 + bytes          precision, UTF-8 ("" = none)
//! [u32 + bytes]        credentials: the client's `Authorization` header
//!                      value, UTF-8, when flag bit 2 is set
//! [u32 + bytes]        reason, UTF-8, dead letters only
//! bytes                body, exactly as it is sent to the node
//! ```
//!
//! Version 1 frames have no sync marker and a CRC of the payload only
//! (`u32 len | u32 crc | payload`): a damaged length there cannot be told
//! from a damaged payload. In version 2 the CRC covers the length, so a
//! frame that checks out was written exactly so, and a reader that meets a
//! bad frame can look for the next one: the next offset where the sync
//! marker, a length in range, a frame inside the file and its CRC and fields
//! all check out. The marker's `ff` and `fe` never occur in UTF-8, so line
//! protocol and statements cannot hold one; a gzip body, or a body that was
//! itself built as a frame, could, which is why a candidate must pass the
//! CRC and every field check, and why the earliest such offset wins.
//!
//! Nothing read from disk is trusted: `len` is checked against the 1 GiB cap
//! and the bytes that exist before anything is read or allocated, the CRC
//! before any field, every inner length against the record, names must be
//! UTF-8, kind and flags known. A record that passes encodes back to exactly
//! the same bytes (the `queue_segment` fuzz target checks it).
//!
//! # Writing: one thread, group commit
//!
//! [`Queue::append`] sends the record to the queue's writer thread (at most
//! 64 MiB of records in flight; appenders wait beyond that) and waits for
//! its answer. The thread takes everything waiting (up to 16 MiB), encodes
//! it into one reused buffer, writes it with one `write` and, with
//! `fsync = batch`, one `fdatasync`; then it publishes the new segment
//! length to readers and acks each appender. `always` syncs and acks each
//! record on its own; `never` acks once the bytes are written to the OS. A
//! new segment file is synced together with its directory before use.
//!
//! A failed write or sync answers every record of the batch not yet synced
//! with [`AppendError::Io`]: those records were not queued. The segment is
//! cut back to its last published length (best effort; a restart cuts
//! anything left as a torn tail) and the next batch goes to a new segment.
//! A full disk is such a failure (`No space left on device`); it ends as
//! soon as replays free space, with nothing to do by hand.
//!
//! # Size bound and `on_full`
//!
//! `max_size` bounds the bytes of all segment files (headers included),
//! checked by the writer thread before each record. When a record does not
//! fit, replayed segments still on disk go first (the segment being written
//! is sealed for that if it holds only replayed records). If it still does
//! not fit, `reject` answers [`AppendError::Full`] (nothing queued is
//! touched) and `drop-oldest` removes whole oldest segments (sealing the
//! current one first if need be) until it fits, counting their records not
//! yet replayed in [`QueueStats::dropped`] and logging a warning; a reader
//! in the middle of a dropped segment continues at the next one. A record
//! that cannot fit even in an empty queue (its encoded size plus two
//! segment headers exceeds `max_size`) is always `Full`. Because segments
//! are at most a quarter of `max_size`, a drop loses at most about a quarter
//! of the queue at once (with the default `segment_size`, a sixteenth).
//!
//! # Reading and the read position
//!
//! One replayer reads with [`Queue::peek_batch`] (which does not move
//! anything) and then calls [`Queue::commit`] with the [`Position`] just
//! after the last record it delivered. Only published (synced) bytes are
//! read. `commit` moves the read position in memory, then stores it in
//! `read-position`, and then removes the segments wholly before it; when
//! nothing is left to replay, the writer thread removes every segment, the
//! one being written included, so a drained queue holds no disk space (the
//! next append starts a new segment).
//!
//! `read-position` is 1 KiB written once and then rewritten in place: two
//! slots in different sectors (`IRQP`, version 2, counter, segment, offset,
//! CRC-32), each store going to the slot not holding the newest position,
//! then `fdatasync`. Storing a position therefore needs no new disk space
//! (on filesystems that overwrite in place, not copy-on-write ones like
//! btrfs or ZFS), and a torn store leaves the previous position in the
//! other slot. The first release's 28-byte file (written whole through a
//! rename) is still read and is replaced at open, while there is room.
//!
//! A store that fails anyway (a disk error) does not undo the commit: the
//! next `peek_batch` reads after the new position, [`Queue::is_empty`]
//! counts it, segments before it are removed, and the failure is logged
//! once, shown in [`QueueStats::position_persist_failing`] and
//! `position_error`, and retried at the next commit and every second until
//! it succeeds. Until then a crash would replay again what was replayed
//! since the last stored position: at-least-once, as below.
//!
//! A segment is deleted only after a commit, when `drop-oldest` drops it, or
//! at open when nothing in it is left to replay.
//!
//! # Opening after a crash
//!
//! [`Queue::open`] scans every segment at or after the stored position: a
//! bad header removes the file. In a version-2 segment a corrupt record
//! with a valid frame after it (found as above) costs that record only: its
//! bytes are logged, counted ([`QueueStats::corrupt_bytes_cut`],
//! [`QueueStats::corrupt_regions_skipped`]), copied to
//! `corrupt-<segment>-<offset>.bin`, left in place, and stepped over by the
//! reader; the records after it are replayed. Bytes after which no valid
//! frame starts are a torn tail (a crash in the middle of a write): the file
//! is cut there, counted and logged, as is everything from the first bad
//! record on in a version-1 segment. A missing or damaged position file
//! means nothing was committed; a position inside a cut or missing segment
//! moves to the next record that exists; a position that is not on a record
//! boundary moves back to the boundary before it. Appends then go to a new
//! segment. A record found corrupt later, while reading (the disk changed
//! under us), is handled the same way, except that nothing is cut from a
//! segment that may still be written: bad bytes with no valid frame after
//! them, up to the published end, are skipped instead.
//!
//! A queue opens on a full disk: the segment it would start is started by
//! the first append that finds room, and the position file, if it must be
//! rewritten in the new form, is stored as soon as there is room.
//!
//! # Invariants
//!
//! * Records are read in the order they were appended, across segments and
//!   restarts.
//! * An appender is acked `Ok` only after its record is durable as the fsync
//!   policy promises; an `Err` answer means it is not queued (but see below).
//! * Readers never see bytes that are not synced (`never`: not written).
//! * Segment sequence numbers only grow, also across restarts.
//! * Nothing is dropped silently: every record that leaves the queue
//!   uncommitted is counted (`dropped`, `corrupt_bytes_cut`,
//!   `corrupt_regions_skipped`) and logged, and a corrupt record's bytes are
//!   kept aside.
//! * A corrupt record in a version-2 segment never costs the intact records
//!   around it (the `queue_flips` fuzz target checks it).
//! * The read position in memory never waits for the disk: a drained queue
//!   is empty even when its position cannot be stored.
//!
//! # At-least-once
//!
//! Delivery is at least once, never at most once: records after the stored
//! read position are replayed again after a crash even if the node already
//! got them (the position is stored after delivery), and a record whose
//! write failed may still turn up after a restart if its bytes did reach the
//! disk. InfluxDB makes this harmless for writes: a point with the same
//! measurement, tag set and timestamp overwrites itself.

pub mod fs;
pub mod memfs;
pub mod record;
pub mod segment;

#[cfg(any(test, fuzzing))]
pub mod flips;

mod corrupt;
mod dead_letter;
mod errors;
mod position;
mod reader;
mod recover;
mod registry;
mod resync;
mod state;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_corrupt;
#[cfg(test)]
mod tests_disk;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::{oneshot, Notify, Semaphore};

pub use crate::config::{FsyncPolicy, OnFull};
pub use fs::{FaultFs, Filesystem, ReadFile, RealFs, RewriteFile, WriteFile};
pub use memfs::MemFs;

pub use errors::{AppendError, QueueError};
pub use state::QueueStats;

use dead_letter::DeadLetters;
use errors::io_error;
use reader::Reader;
use segment::SEGMENT_HEADER_LEN;
use state::{Counters, Shared};
use writer::{Msg, Request, Writer};

/// The largest record payload the queue takes (1 GiB less room for a
/// dead-letter reason).
pub const MAX_RECORD_LEN: u64 = record::MAX_PAYLOAD_LEN - (64 << 10);

/// Bytes of records on their way to the writer thread, at most.
const IN_FLIGHT_BYTES: u64 = 64 << 20;
/// The unit of the in-flight semaphore.
const PERMIT_BYTES: u64 = 64 << 10;
const PERMITS: u64 = IN_FLIGHT_BYTES / PERMIT_BYTES;

/// How one queue behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Bound on the bytes of all segment files.
    pub max_size: u64,
    pub on_full: OnFull,
    pub fsync: FsyncPolicy,
    /// Target size of one segment file (capped at `max_size / 4`).
    pub segment_size: u64,
}

impl QueueConfig {
    /// Segments of `max_size / 16`, at least 1 MiB and at most 64 MiB.
    pub fn new(max_size: u64, on_full: OnFull, fsync: FsyncPolicy) -> QueueConfig {
        QueueConfig {
            max_size,
            on_full,
            fsync,
            segment_size: (max_size / 16).clamp(1 << 20, 64 << 20),
        }
    }

    /// The size at which the writer starts a new segment.
    fn segment_limit(&self) -> u64 {
        self.segment_size.min(self.max_size / 4)
    }
}

/// What a record asks the node to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A line-protocol body for `POST /write`.
    Write = 1,
    /// An admin InfluxQL statement to replay as `POST /query`.
    Statement = 2,
    /// A Prometheus remote write (a snappy-compressed protobuf
    /// `WriteRequest`) for `POST /api/v1/prom/write`.
    PromWrite = 3,
}

/// One queued write or statement, as it will be sent to the node.
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: RecordKind,
    /// Unix ms when the router accepted it.
    pub accepted_at_ms: u64,
    /// "" allowed for statements.
    pub db: String,
    /// "" = none.
    pub rp: String,
    /// "" = none; as sent to nodes ("n", "u", "ms", "s", "m", "h").
    pub precision: String,
    /// The body is gzip-encoded (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// The client's credentials, as the `Authorization` header value the
    /// node gets on replay (`Basic …`, `Token …`, `Bearer …`); `None` when
    /// the client sent none. A replay never uses any other credentials.
    pub auth: Option<crate::config::Secret>,
    /// Write: line protocol as sent; statement: the `q` text (UTF-8);
    /// Prometheus remote write: the snappy block as sent.
    pub body: crate::payload::Payload,
}

/// A place in the queue: just after a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// A handle to one queue directory; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Handle>,
}

/// What the handles share; dropping the last one closes the queue.
struct Handle {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
    permits: Arc<Semaphore>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Reader>,
    dead: Mutex<DeadLetters>,
    /// The directory as the registry of open queues knows it.
    key: PathBuf,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("dir", &self.dir())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Queue {
    /// Opens (creating) the queue in `dir`, recovering after a crash: a torn
    /// tail is cut at the last whole record and a corrupt record followed by
    /// valid ones is skipped alone (counted in `corrupt_bytes_cut`, logged),
    /// the read position is restored, records counted. Spawns the writer
    /// thread.
    pub fn open(dir: &Path, config: QueueConfig) -> Result<Queue, QueueError> {
        Queue::open_with(dir, config, Arc::new(RealFs))
    }

    /// [`Queue::open`] on another filesystem (tests inject faults).
    ///
    /// A directory already open in this process gives the queue that is
    /// open (its configuration stays): two writers on one directory would
    /// destroy each other's segments.
    pub fn open_with(
        dir: &Path,
        config: QueueConfig,
        fs: Arc<dyn Filesystem>,
    ) -> Result<Queue, QueueError> {
        fs.create_dir_all(dir).map_err(io_error("create", dir))?;
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let opened = registry::open_once(&key, || Queue::open_new(dir, config, fs, key.clone()))?;
        Ok(Queue { inner: opened })
    }

    fn open_new(
        dir: &Path,
        config: QueueConfig,
        fs: Arc<dyn Filesystem>,
        key: PathBuf,
    ) -> Result<Arc<Handle>, QueueError> {
        let found = recover::recover(fs.as_ref(), dir)?;
        let (dead, dead_cut) = DeadLetters::open(fs.as_ref(), dir)?;
        let counters = Counters::default();
        counters
            .corrupt_bytes_cut
            .store(found.corrupt_bytes + dead_cut, Ordering::Relaxed);
        counters
            .corrupt_regions_skipped
            .store(found.corrupt_regions, Ordering::Relaxed);
        let records = found.state.records;
        let position_current = found.position.is_current();
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            fs,
            config,
            state: Mutex::new(found.state),
            backlog: records.into(),
            appended: Notify::new(),
            published: std::sync::Condvar::new(),
            counters,
            position: Mutex::new(found.position),
            position_error: Mutex::new(None),
            position_failing: false.into(),
        });
        if !position_current {
            // the file that later stores rewrite in place, made while there is room
            shared.store_position();
        }
        let mut writer = Writer::new(Arc::clone(&shared), found.next_seq);
        writer.start()?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(String::from("queue-writer"))
            .spawn(move || writer.run(rx))
            .map_err(io_error("start the writer thread for", dir))?;
        let handle = Handle {
            shared,
            tx,
            permits: Arc::new(Semaphore::new(PERMITS as usize)),
            writer: Mutex::new(Some(thread)),
            reader: Mutex::new(Reader::default()),
            dead: Mutex::new(dead),
            key,
        };
        Ok(Arc::new(handle))
    }

    /// Appends; resolves once the record is durable per the fsync policy.
    ///
    /// Full + reject: `Err(Full)`. Full + drop-oldest: whole oldest
    /// segments are dropped (counted, logged) until it fits. A record that
    /// cannot fit in an empty queue: `Err(Full)`. If the future is dropped
    /// after the record was handed over, it is still appended.
    pub async fn append(&self, record: Record) -> Result<(), AppendError> {
        let handle = &self.inner;
        let permits = record
            .encoded_len()
            .div_ceil(PERMIT_BYTES)
            .clamp(1, PERMITS) as u32;
        let permits = Arc::clone(&handle.permits)
            .acquire_many_owned(permits)
            .await;
        let permit = permits.map_err(|_| AppendError::Closed)?;
        let (ack, answer) = oneshot::channel();
        handle.shared.backlog.fetch_add(1, Ordering::SeqCst);
        let request = Request {
            record,
            ack,
            permit,
        };
        if handle.tx.send(Msg::Append(request)).is_err() {
            handle.shared.forget_records(1);
            return Err(AppendError::Closed);
        }
        answer.await.unwrap_or_else(|_| {
            handle.shared.forget_records(1);
            Err(AppendError::Closed)
        })
    }

    /// True when every appended record has been committed (or dropped): no
    /// backlog, and no append in progress. One atomic load.
    pub fn is_empty(&self) -> bool {
        self.inner.shared.backlog.load(Ordering::SeqCst) == 0
    }

    /// Completes when records are appended after the call (the future
    /// registers when `appended()` is called, not when first polled). An
    /// append that nobody waited for leaves one wake-up behind, so the next
    /// call may complete at once: "peek found nothing, then wait" never
    /// misses a record, at the price of one spurious wake-up.
    pub fn appended(&self) -> impl Future<Output = ()> + Send + '_ {
        self.inner.shared.appended.notified()
    }

    /// Reads up to `max_bytes` (at least one record even if bigger) and
    /// `max_records` records from the read position, without moving it.
    /// Each record comes with the position just after it. When nothing is
    /// readable but an append is on its way, waits for it up to 50 ms (so a
    /// reader looping on `!is_empty()` does not spin). Blocking.
    pub fn peek_batch(
        &self,
        max_bytes: usize,
        max_records: usize,
    ) -> Result<Vec<(Position, Record)>, QueueError> {
        let shared = &self.inner.shared;
        lock(&self.inner.reader).peek_batch(shared, max_bytes, max_records)
    }

    /// Moves the read position to `upto` (a position from `peek_batch`),
    /// stores it durably, and removes segments wholly before it; when
    /// nothing is left to replay, every segment goes (the one being written
    /// too). A position at or before the read position is a no-op.
    ///
    /// `Ok` once the position moved in memory: the next `peek_batch` reads
    /// after it and [`Queue::is_empty`] counts it, even when storing it
    /// failed (a disk error; then [`QueueStats::position_persist_failing`]
    /// says so and the store is tried again at the next commit and every
    /// second). `Err` only for a position that is not a record end after
    /// the read position, or a segment that cannot be read to check it.
    /// Blocking.
    pub fn commit(&self, upto: Position) -> Result<(), QueueError> {
        let shared = &self.inner.shared;
        lock(&self.inner.reader).commit(shared, upto)?;
        let replayed = {
            let state = shared.lock();
            state.records == 0 && state.bytes > state.segments.len() as u64 * SEGMENT_HEADER_LEN
        };
        if replayed {
            self.inner.reclaim();
        }
        Ok(())
    }

    /// Appends `record` with `reason` to `dead-letter.log` and fsyncs it.
    /// Does not commit: the caller commits past the record. Blocking.
    pub fn dead_letter(&self, record: &Record, reason: &str) -> Result<(), QueueError> {
        lock(&self.inner.dead).append(&self.inner.shared, record, reason)
    }

    /// The entries of the current dead-letter file with their reasons,
    /// oldest first. Blocking.
    pub fn read_dead_letters(&self) -> Result<Vec<(Record, String)>, QueueError> {
        let shared = &self.inner.shared;
        let _writing = lock(&self.inner.dead);
        dead_letter::read_all(shared.fs.as_ref(), &shared.dir)
    }

    pub fn stats(&self) -> QueueStats {
        self.inner.shared.stats()
    }

    /// Records dropped by `on_full = drop-oldest` since the last call (each
    /// drop is reported to exactly one caller, whichever handle asks).
    pub fn take_drops(&self) -> u64 {
        let counters = &self.inner.shared.counters;
        counters.drops_untaken.swap(0, Ordering::Relaxed)
    }

    pub fn dir(&self) -> &Path {
        self.inner.shared.dir()
    }

    /// Stops the writer thread once everything accepted so far is written
    /// and synced; later appends get `Closed`. Idempotent; also done when the
    /// last handle is dropped. Blocks for the last batch.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl Handle {
    fn is_closed(&self) -> bool {
        lock(&self.writer).is_none()
    }

    /// Has the writer thread remove the segments if nothing in them is left
    /// to replay, and waits until it has.
    fn reclaim(&self) {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Msg::Reclaim(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    fn close(&self) {
        let Some(thread) = lock(&self.writer).take() else {
            return;
        };
        self.permits.close();
        let _ = self.tx.send(Msg::Close);
        if thread.join().is_err() {
            let dir = self.shared.dir.display();
            tracing::error!(queue = %dir, "queue writer thread panicked");
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close();
        registry::forget(&self.key);
    }
}
