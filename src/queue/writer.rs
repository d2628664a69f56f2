//! The one writer thread of a queue: group commit.
//!
//! Appenders hand records over a channel (bounded by a semaphore of in-flight
//! bytes) and wait on a oneshot. The thread takes everything pending (up to
//! [`BATCH_BYTES`]), encodes it into one reused buffer, writes it with one
//! `write`, syncs once (`fsync = batch`), publishes the new length to
//! readers, and only then acks each appender. `fsync = always` does the same
//! per record; `fsync = never` skips the sync.
//!
//! On a failed write or sync every record not yet published is answered
//! with an error, the segment is cut back to its published length (best
//! effort) and a new segment is started for the next batch: bytes of a
//! failed batch never sit between published records.
//!
//! Asked to reclaim ([`Msg::Reclaim`], after a commit that left nothing to
//! replay), it removes every segment, the one being written included, so a
//! drained queue holds no disk space; the next append starts a new segment.
//! While idle it retries storing a read position that could not be stored.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::fs::{write_all, WriteFile};
use super::record::{encode_into, Format, FRAME_HEADER_LEN};
use super::segment::{encode_header, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};
use super::state::{SegmentMeta, Shared};
use super::{AppendError, FsyncPolicy, OnFull, QueueError, Record, MAX_RECORD_LEN};

/// Most bytes of records taken into one write.
pub const BATCH_BYTES: u64 = 16 << 20;
/// Most records taken into one write.
const BATCH_RECORDS: usize = 4096;
/// How often a read position that could not be stored is tried again.
const POSITION_RETRY: Duration = Duration::from_secs(1);
/// Encoded bytes after which the buffer is written out (without a sync)
/// even in the middle of a batch, so the buffer stays small: one sync still
/// covers the whole batch.
const SPILL_BYTES: usize = 1 << 20;

pub type Ack = oneshot::Sender<Result<(), AppendError>>;

pub enum Msg {
    Append(Request),
    /// Remove the segments if nothing in them is left to replay; answers
    /// once done.
    Reclaim(Sender<()>),
    /// Finish what came before, sync, and stop.
    Close,
}

pub struct Request {
    pub record: Record,
    pub ack: Ack,
    /// Released once the record is encoded: bounds the bytes in flight.
    pub permit: OwnedSemaphorePermit,
}

/// The segment being written.
struct Active {
    seq: u64,
    file: Box<dyn WriteFile>,
    /// Bytes in the file.
    written: u64,
    /// Bytes readers may see.
    published: u64,
}

pub struct Writer {
    shared: Arc<Shared>,
    next_seq: u64,
    active: Option<Active>,
    /// Frames encoded and not yet written.
    buf: Vec<u8>,
    /// Acks of the records written or buffered since the last publish.
    pending: Vec<Ack>,
    pending_head_accepted_at_ms: Option<u64>,
    /// Records refused since the queue became full (`on_full = reject`);
    /// `None` while it has room. Its changes are logged, not each refusal.
    refusing: Option<u64>,
    /// Reclaims asked for during the batch being written.
    reclaims: Vec<Sender<()>>,
    /// When storing the read position was last retried.
    position_retried: Instant,
}

impl Writer {
    pub fn new(shared: Arc<Shared>, next_seq: u64) -> Writer {
        Writer {
            shared,
            next_seq,
            active: None,
            buf: Vec::new(),
            pending: Vec::new(),
            pending_head_accepted_at_ms: None,
            refusing: None,
            reclaims: Vec::new(),
            position_retried: Instant::now(),
        }
    }

    /// Creates the first segment, so that `Queue::open` reports a directory
    /// it cannot write to. A full disk is no reason not to open (replays
    /// free space): the first append tries again.
    pub fn start(&mut self) -> Result<(), QueueError> {
        match self.open_segment() {
            Ok(()) => Ok(()),
            Err((path, e)) if e.raw_os_error() == Some(NO_SPACE) => {
                tracing::warn!(path = %path.display(), error = %e, "disk full: the queue opens without a segment to write; appends will try again");
                Ok(())
            }
            Err((path, source)) => Err(QueueError::Io {
                op: "create",
                path,
                source,
            }),
        }
    }

    /// The thread's body: batches until `Close` or every sender is gone.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut batch = Vec::new();
        let mut closing = false;
        while !closing {
            let first = match rx.recv_timeout(POSITION_RETRY) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    self.retry_position();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            closing = self.take_batch(first, &rx, &mut batch);
            self.write_batch(&mut batch);
            self.reclaim();
            self.retry_position();
        }
        self.sync_on_close();
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Append(request) = msg {
                self.refuse(request.ack, AppendError::Closed);
            }
        }
    }

    /// Fills `batch` with `first` and whatever else is waiting; true on `Close`.
    fn take_batch(&mut self, first: Msg, rx: &Receiver<Msg>, batch: &mut Vec<Request>) -> bool {
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Close => return true,
                Msg::Reclaim(done) => self.reclaims.push(done),
                Msg::Append(request) => {
                    bytes += request.record.encoded_len();
                    batch.push(request);
                }
            }
            if bytes < BATCH_BYTES && batch.len() < BATCH_RECORDS {
                next = rx.try_recv().ok();
            }
        }
        false
    }

    /// Answers the reclaims asked for, removing every segment if nothing in
    /// them is left to replay.
    fn reclaim(&mut self) {
        if self.reclaims.is_empty() {
            return;
        }
        if self.pending.is_empty() && self.buf.is_empty() {
            let gone = self.shared.lock().take_all_replayed();
            if gone
                .iter()
                .any(|s| Some(s.seq) == self.active.as_ref().map(|a| a.seq))
            {
                self.active = None;
            }
            self.shared.remove_segments(&gone);
        }
        for done in self.reclaims.drain(..) {
            let _ = done.send(());
        }
    }

    /// Stores the read position again, at most every [`POSITION_RETRY`],
    /// if the last attempt failed.
    fn retry_position(&mut self) {
        if self.position_retried.elapsed() >= POSITION_RETRY {
            self.position_retried = Instant::now();
            self.shared.retry_position();
        }
    }

    fn write_batch(&mut self, batch: &mut Vec<Request>) {
        let always = self.shared.config.fsync == FsyncPolicy::Always;
        for request in batch.drain(..) {
            let Request {
                record,
                ack,
                permit,
            } = request;
            match self.add(&record) {
                Ok(()) => {
                    self.has_room();
                    self.pending.push(ack)
                }
                Err(e) => self.refuse(ack, e),
            }
            drop(permit);
            if always {
                let _ = self.commit_pending();
            }
        }
        let _ = self.commit_pending();
        if self.buf.capacity() > 4 * SPILL_BYTES {
            self.buf = Vec::new();
        }
    }

    fn refuse(&self, ack: Ack, error: AppendError) {
        self.shared.forget_records(1);
        let _ = ack.send(Err(error));
    }

    /// Makes room for `record` and encodes it into the buffer.
    fn add(&mut self, record: &Record) -> Result<(), AppendError> {
        self.admit(record)?;
        if self.active.is_none() {
            self.open_segment().map_err(create_error)?;
        }
        let len = self.active.as_ref().map_or(0, |a| a.written) + self.buf.len() as u64;
        let limit = self.shared.config.segment_limit();
        if len > SEGMENT_HEADER_LEN && len + record.encoded_len() > limit {
            self.roll()?;
        }
        encode_into(record, None, Format::V2, &mut self.buf);
        let head = &mut self.pending_head_accepted_at_ms;
        head.get_or_insert(record.accepted_at_ms);
        if self.buf.len() >= SPILL_BYTES {
            if let Err(e) = self.spill() {
                return Err(self.abandon(e));
            }
        }
        Ok(())
    }

    /// Writes the buffer out without syncing or publishing it.
    fn spill(&mut self) -> io::Result<()> {
        let Some(active) = self.active.as_mut() else {
            return Err(io::Error::other("no segment open"));
        };
        write_all(active.file.as_mut(), &self.buf)?;
        active.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Checks `max_size`, making room as `on_full` allows.
    fn admit(&mut self, record: &Record) -> Result<(), AppendError> {
        let max = self.shared.config.max_size;
        let need = record.encoded_len() + SEGMENT_HEADER_LEN;
        // it must fit beside the header of the segment being written
        if need + SEGMENT_HEADER_LEN > max
            || record.encoded_len() - FRAME_HEADER_LEN > MAX_RECORD_LEN
        {
            return Err(AppendError::Full { max });
        }
        loop {
            let live = self.shared.lock().bytes + self.unpublished();
            if live + need <= max {
                return Ok(());
            }
            if !self.make_room()? {
                self.is_full(max);
                return Err(AppendError::Full { max });
            }
        }
    }

    /// A record did not fit: logs when the queue starts refusing.
    fn is_full(&mut self, max: u64) {
        let refused = self.refusing.get_or_insert(0);
        *refused += 1;
        if *refused == 1 {
            let dir = self.shared.dir.display();
            tracing::warn!(queue = %dir, max_size = max, "queue full: refusing new records (on_full = reject) until replays make room");
        }
    }

    /// A record was taken: logs when the queue stops refusing.
    fn has_room(&mut self) {
        if let Some(refused) = self.refusing.take() {
            let dir = self.shared.dir.display();
            tracing::info!(queue = %dir, refused, "queue has room again; records are taken");
        }
    }

    /// Bytes encoded or written that readers cannot see yet.
    fn unpublished(&self) -> u64 {
        let written = self.active.as_ref().map_or(0, |a| a.written - a.published);
        written + self.buf.len() as u64
    }

    /// Frees some bytes; false when nothing can go.
    fn make_room(&mut self) -> Result<bool, AppendError> {
        if self.remove_consumed() {
            return Ok(true);
        }
        let (last_len, last_left) = {
            let state = self.shared.lock();
            state
                .segments
                .back()
                .map_or((0, 0), |s| (s.len, s.records_left))
        };
        let last_has_records = last_left > 0 || !self.pending.is_empty();
        if last_len > SEGMENT_HEADER_LEN && !last_has_records {
            // only replayed records in the segment being written: seal it so it can go
            self.roll()?;
            return Ok(self.remove_consumed());
        }
        if self.shared.config.on_full == OnFull::Reject {
            return Ok(false);
        }
        if self.drop_oldest() {
            return Ok(true);
        }
        if last_has_records {
            self.roll()?;
            return Ok(self.drop_oldest());
        }
        Ok(false)
    }

    /// Removes sealed segments that were replayed completely.
    fn remove_consumed(&self) -> bool {
        let gone = self.shared.lock().take_consumed();
        let left: u64 = gone.iter().map(|s| s.records_left).sum();
        self.shared.forget_records(left);
        self.shared.remove_segments(&gone);
        !gone.is_empty()
    }

    /// Drops the oldest sealed segment, records not replayed included.
    fn drop_oldest(&self) -> bool {
        let Some(seg) = self.shared.lock().take_oldest_sealed() else {
            return false;
        };
        let records = seg.records_left;
        if records > 0 {
            let counters = &self.shared.counters;
            counters.dropped.fetch_add(records, Ordering::Relaxed);
            counters.drops_untaken.fetch_add(records, Ordering::Relaxed);
            self.shared.forget_records(records);
            let dir = self.shared.dir.display();
            tracing::warn!(queue = %dir, segment = seg.seq, records, bytes = seg.len, "queue full: dropped the oldest records (on_full = drop-oldest)");
        }
        self.shared.remove_segments(&[seg]);
        true
    }

    /// Publishes what is pending and starts a new segment.
    fn roll(&mut self) -> Result<(), AppendError> {
        self.commit_pending()?;
        self.active = None;
        self.open_segment().map_err(create_error)
    }

    /// Writes, syncs and publishes the buffer; on failure every pending
    /// record is answered with the error.
    fn commit_pending(&mut self) -> Result<(), AppendError> {
        if self.pending.is_empty() && self.buf.is_empty() {
            return Ok(());
        }
        match self.flush() {
            Ok(()) => {
                self.publish();
                Ok(())
            }
            Err(e) => Err(self.abandon(e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.spill()?;
        if self.shared.config.fsync != FsyncPolicy::Never {
            if let Some(active) = self.active.as_mut() {
                active.file.sync()?;
            }
        }
        Ok(())
    }

    /// Makes the written records visible to readers and acks them.
    fn publish(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let records = self.pending.len() as u64;
        let head = self.pending_head_accepted_at_ms.take();
        {
            let mut state = self.shared.lock();
            let added = active.written - active.published;
            if let Some(seg) = state.segment_mut(active.seq) {
                seg.len = active.written;
                if seg.records_left == 0 {
                    seg.head_accepted_at_ms = head;
                }
                seg.records_left += records;
                seg.published += records;
                state.bytes += added;
                state.records += records;
            }
        }
        active.published = active.written;
        if records > 0 {
            let counters = &self.shared.counters;
            counters.appended.fetch_add(records, Ordering::Relaxed);
            self.shared.published.notify_all();
            self.shared.appended.notify_waiters();
            self.shared.appended.notify_one();
        }
        for ack in self.pending.drain(..) {
            let _ = ack.send(Ok(()));
        }
    }

    /// Fails every pending record and leaves the segment behind.
    fn abandon(&mut self, error: io::Error) -> AppendError {
        let seq = self.active.as_ref().map_or(self.next_seq, |a| a.seq);
        let path = self.shared.segment_path(seq);
        let message = format!("cannot write queue segment {}: {error}", path.display());
        let records = self.pending.len();
        tracing::error!(path = %path.display(), error = %error, records, "queue write failed; the records were not queued");
        self.shared.forget_records(records as u64);
        for ack in self.pending.drain(..) {
            let _ = ack.send(Err(AppendError::Io(message.clone())));
        }
        self.buf.clear();
        self.pending_head_accepted_at_ms = None;
        if let Some(active) = self.active.take() {
            drop(active.file);
            if let Err(e) = self.shared.fs.truncate(&path, active.published) {
                tracing::warn!(path = %path.display(), error = %e, "cannot cut a failed write off a queue segment; a restart will");
            }
        }
        AppendError::Io(message)
    }

    /// Creates the next segment, durably, and lists it.
    fn open_segment(&mut self) -> Result<(), (PathBuf, io::Error)> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.shared.segment_path(seq);
        let file = self.create_segment(seq).map_err(|e| {
            let _ = self.shared.fs.remove_file(&path);
            (path, e)
        })?;
        let mut state = self.shared.lock();
        let meta = SegmentMeta::new(seq, SEGMENT_HEADER_LEN, 0, Format::V2);
        state.segments.push_back(meta);
        state.bytes += SEGMENT_HEADER_LEN;
        let (written, published) = (SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN);
        self.active = Some(Active {
            seq,
            file,
            written,
            published,
        });
        Ok(())
    }

    fn create_segment(&self, seq: u64) -> io::Result<Box<dyn WriteFile>> {
        let shared = &self.shared;
        let mut file = shared.fs.create(&shared.segment_path(seq))?;
        write_all(file.as_mut(), &encode_header(SEGMENT_MAGIC, seq))?;
        if shared.config.fsync != FsyncPolicy::Never {
            file.sync()?;
            shared.fs.sync_dir(&shared.dir)?;
        }
        Ok(file)
    }

    /// `fsync = never` still leaves a closed queue synced.
    fn sync_on_close(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        if let Err(e) = active.file.sync() {
            let path = self.shared.segment_path(active.seq);
            tracing::warn!(path = %path.display(), error = %e, "cannot sync a queue segment on close");
        }
    }
}

/// `ENOSPC`: no space left on the device.
const NO_SPACE: i32 = 28;

fn create_error((path, error): (PathBuf, io::Error)) -> AppendError {
    AppendError::Io(format!(
        "cannot create queue segment {}: {error}",
        path.display()
    ))
}
