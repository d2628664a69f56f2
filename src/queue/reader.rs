//! The read side: `peek_batch` and `commit`.
//!
//! A batch is read straight from the segment files with one `pread` per
//! segment into one buffer; record bodies are slices of it. Only bytes the
//! writer has published (written and synced) are read. The file lock is
//! never held during I/O: the reader takes a snapshot of the segment list,
//! reads, and re-checks when it commits.
//!
//! Corrupt stretches found at open are stepped over without reading them.
//! A record that fails its CRC here (the disk changed after recovery) is
//! handled by [`super::resync`]: in a version-2 segment only the bad bytes
//! are skipped, in a version-1 segment the rest of it; either way logged
//! and counted, so the replayer is never stuck on it.
//!
//! A commit moves the read position in memory first, then stores it; a
//! store that fails (disk error) does not undo the commit: it is reported
//! in the stats and retried (see [`Shared::store_position`]).

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::fs::{read_exact_at, ReadFile};
use super::record::{decode_chunk, frame_len, Corrupt, Format, Stop};
use super::resync;
use super::segment::{Scanner, Step, SEGMENT_HEADER_LEN};
use super::state::{SegmentView, Shared};
use super::{io_error, Position, QueueError, Record};

/// How long an empty peek waits for an append in flight.
const WAIT_FOR_APPEND: Duration = Duration::from_millis(50);

/// The reader's own state, behind its own lock.
#[derive(Default)]
pub struct Reader {
    /// The segment file last read.
    file: Option<(u64, Box<dyn ReadFile>)>,
    /// The last batch: (position after, accepted_at_ms) of each record.
    last: Vec<(Position, u64)>,
}

/// What one read inside one segment gave.
struct Chunk {
    records: Vec<(Position, Record)>,
    end: ChunkEnd,
}

enum ChunkEnd {
    /// Everything up to the published end of the segment was read.
    Segment,
    /// The byte budget or the record count is used up.
    Full,
    /// Bytes from `at` on are not records.
    Corrupt { at: u64, why: Corrupt },
}

/// The records between two positions, for a commit.
struct Walk {
    ends: Vec<Position>,
    /// When the record right after the committed one was accepted.
    next_accepted_at_ms: Option<u64>,
}

impl Reader {
    pub fn peek_batch(
        &mut self,
        shared: &Shared,
        max_bytes: usize,
        max_records: usize,
    ) -> Result<Vec<(Position, Record)>, QueueError> {
        let batch = self.read_batch(shared, max_bytes, max_records)?;
        if !batch.is_empty() {
            return Ok(batch);
        }
        shared.wait_for_records(WAIT_FOR_APPEND);
        self.read_batch(shared, max_bytes, max_records)
    }

    fn read_batch(
        &mut self,
        shared: &Shared,
        max_bytes: usize,
        max_records: usize,
    ) -> Result<Vec<(Position, Record)>, QueueError> {
        let max_records = max_records.max(1);
        let mut budget = max_bytes as u64;
        let mut out: Vec<(Position, Record)> = Vec::new();
        let mut pos = shared.lock().read;
        while out.len() < max_records {
            let Some(view) = shared.lock().locate(pos) else {
                break;
            };
            pos = view.at;
            if let Some((start, end)) = view.skip.filter(|(start, _)| pos.offset >= *start) {
                debug_assert!(start < end);
                pos.offset = end;
                continue;
            }
            let limit = view.skip.map_or(view.len, |(start, _)| start);
            if pos.offset >= limit {
                if !view.sealed {
                    break;
                }
                pos = Position::start_of(pos.segment + 1);
                continue;
            }
            if budget == 0 && !out.is_empty() {
                break;
            }
            let room = max_records - out.len();
            let chunk = self.read_chunk(shared, view, limit, budget, room, out.is_empty())?;
            if let Some((end, _)) = chunk.records.last() {
                budget = budget.saturating_sub(end.offset - pos.offset);
                pos = *end;
            }
            out.extend(chunk.records);
            match chunk.end {
                ChunkEnd::Segment => pos.offset = limit,
                ChunkEnd::Full => break,
                ChunkEnd::Corrupt { .. } if !out.is_empty() => break,
                ChunkEnd::Corrupt { at, why } => {
                    self.file = None;
                    if !resync::after_corrupt(shared, view, at, why)? {
                        break;
                    }
                }
            }
        }
        if !out.is_empty() {
            self.last = out.iter().map(|(p, r)| (*p, r.accepted_at_ms)).collect();
        }
        Ok(out)
    }

    /// Reads records of one segment from `view.at` up to `limit` within the
    /// budget; the first record of a batch is read whatever its size.
    fn read_chunk(
        &mut self,
        shared: &Shared,
        view: SegmentView,
        limit: u64,
        budget: u64,
        room: usize,
        first: bool,
    ) -> Result<Chunk, QueueError> {
        let at = view.at;
        let avail = limit - at.offset;
        let mut want = avail.min(budget);
        if first && want < avail {
            let header_len = view.format.header_len().min(avail);
            match self.read(shared, at.segment, at.offset, header_len) {
                Ok(header) => match frame_len(&header, view.format) {
                    Ok(len) => want = want.max(len.unwrap_or(avail).min(avail)),
                    Err(why) => return Ok(corrupt(at.offset, why)),
                },
                Err(e) => return vanished(shared, at, e),
            }
        }
        let bytes = match self.read(shared, at.segment, at.offset, want) {
            Ok(bytes) => bytes,
            Err(e) => return vanished(shared, at, e),
        };
        let mut decoded = Vec::new();
        let stop = decode_chunk(&bytes, view.format, room, &mut decoded);
        let records = decoded
            .into_iter()
            .map(|(end, record)| (at.at(end), record))
            .collect();
        let end = match stop {
            Stop::End if want == avail => ChunkEnd::Segment,
            Stop::End | Stop::Full => ChunkEnd::Full,
            Stop::Partial { at: 0, .. } if first => ChunkEnd::Corrupt {
                at: at.offset,
                why: "record runs past the end of the segment",
            },
            Stop::Partial { .. } => ChunkEnd::Full,
            Stop::Corrupt { at: bad, why } => ChunkEnd::Corrupt {
                at: at.offset + bad as u64,
                why,
            },
        };
        Ok(Chunk { records, end })
    }

    /// `len` bytes of segment `seq` from `offset`, in one buffer.
    fn read(&mut self, shared: &Shared, seq: u64, offset: u64, len: u64) -> io::Result<Bytes> {
        if self.file.as_ref().map(|(s, _)| *s) != Some(seq) {
            self.file = None;
            let file = shared.fs.open_read(&shared.segment_path(seq))?;
            self.file = Some((seq, file));
        }
        let Some((_, file)) = self.file.as_ref() else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mut buf = BytesMut::zeroed(len);
        read_exact_at(file.as_ref(), &mut buf, offset)?;
        Ok(buf.freeze())
    }

    pub fn commit(&mut self, shared: &Shared, upto: Position) -> Result<(), QueueError> {
        let read = shared.lock().read;
        if upto <= read {
            return Ok(());
        }
        let walk = match self.walk_last_batch(read, upto) {
            Some(walk) => walk,
            None => self.walk_disk(shared, read, upto)?,
        };
        let mut state = shared.lock();
        if upto <= state.read {
            return Ok(());
        }
        let mut committed = 0;
        let read = state.read;
        for end in walk.ends.iter().filter(|&&end| end > read) {
            if let Some(seg) = state.segment_mut(end.segment) {
                seg.records_left = seg.records_left.saturating_sub(1);
                committed += 1;
            }
        }
        state.records = state.records.saturating_sub(committed);
        state.read = upto;
        if let Some(seg) = state.segment_mut(upto.segment) {
            seg.skips.retain(|(_, end)| *end > upto.offset);
            seg.head_accepted_at_ms = match seg.records_left {
                0 => None,
                _ => walk.next_accepted_at_ms.or(seg.head_accepted_at_ms),
            };
        }
        drop(state);
        let counters = &shared.counters;
        counters
            .replayed
            .fetch_add(committed, std::sync::atomic::Ordering::Relaxed);
        shared.forget_records(committed);
        shared.store_position();
        let gone = shared.lock().take_consumed();
        if let Some((seq, _)) = &self.file {
            if gone.iter().any(|s| s.seq == *seq) {
                self.file = None;
            }
        }
        let left: u64 = gone.iter().map(|s| s.records_left).sum();
        shared.forget_records(left);
        shared.remove_segments(&gone);
        Ok(())
    }

    /// The records of the last batch in `(read, upto]`, if `upto` is one of
    /// them (the batch is sorted by position).
    fn walk_last_batch(&self, read: Position, upto: Position) -> Option<Walk> {
        let i = self.last.binary_search_by_key(&upto, |(p, _)| *p).ok()?;
        let from = self.last.partition_point(|(p, _)| *p <= read);
        let ends = self.last[from.min(i + 1)..=i]
            .iter()
            .map(|(p, _)| *p)
            .collect();
        let next = self
            .last
            .get(i + 1)
            .filter(|(p, _)| p.segment == upto.segment);
        Some(Walk {
            ends,
            next_accepted_at_ms: next.map(|(_, accepted)| *accepted),
        })
    }

    /// The records in `(read, upto]` read from disk; `upto` must end one.
    fn walk_disk(
        &mut self,
        shared: &Shared,
        read: Position,
        upto: Position,
    ) -> Result<Walk, QueueError> {
        let segments: Vec<(u64, u64)> = {
            let state = shared.lock();
            let range = read.segment..=upto.segment;
            let live = state.segments.iter().filter(|s| range.contains(&s.seq));
            live.map(|s| (s.seq, s.len)).collect()
        };
        let bad = QueueError::BadPosition(upto);
        match segments.last() {
            Some(&(seq, len)) if seq == upto.segment && upto.offset <= len => {}
            _ => return Err(bad),
        }
        let mut walk = Walk {
            ends: Vec::new(),
            next_accepted_at_ms: None,
        };
        for (seq, len) in segments {
            let start = if seq == read.segment {
                read.offset
            } else {
                SEGMENT_HEADER_LEN
            };
            let end = if seq == upto.segment {
                upto.offset
            } else {
                len
            };
            let path = shared.segment_path(seq);
            let file = shared
                .fs
                .open_read(&path)
                .map_err(io_error("open", &path))?;
            let format = shared.lock().segment_mut(seq).map(|s| s.format);
            let format = format.unwrap_or(Format::V2);
            let mut scanner = Scanner::new(file.as_ref(), start, end, format, false);
            loop {
                match scanner.next_step().map_err(io_error("read", &path))? {
                    Step::Record { end, .. } => walk.ends.push(Position {
                        segment: seq,
                        offset: end,
                    }),
                    Step::Skipped { .. } => {}
                    Step::End => break,
                    Step::Corrupt { .. } => return Err(QueueError::BadPosition(upto)),
                }
            }
            if seq == upto.segment && upto.offset < len {
                let next = accepted_at(file.as_ref(), format, upto.offset, len);
                walk.next_accepted_at_ms = next;
            }
        }
        match walk.ends.last() {
            Some(&last) if last == upto => Ok(walk),
            _ => Err(bad),
        }
    }
}

/// When the record at `offset` was accepted, read from its header only.
fn accepted_at(file: &dyn ReadFile, format: Format, offset: u64, len: u64) -> Option<u64> {
    // kind and flags come before it
    let at = offset + format.header_len() + 2;
    let mut accepted = [0; 8];
    if at + accepted.len() as u64 > len {
        return None;
    }
    read_exact_at(file, &mut accepted, at).ok()?;
    Some(u64::from_le_bytes(accepted))
}

fn corrupt(at: u64, why: Corrupt) -> Chunk {
    let end = ChunkEnd::Corrupt { at, why };
    Chunk {
        records: Vec::new(),
        end,
    }
}

/// A read that failed: a segment file that is gone or shorter than
/// published is treated as corrupt from `at`; other errors are returned.
fn vanished(shared: &Shared, at: Position, error: io::Error) -> Result<Chunk, QueueError> {
    match error.kind() {
        io::ErrorKind::NotFound => Ok(corrupt(at.offset, "segment file is missing")),
        io::ErrorKind::UnexpectedEof => {
            Ok(corrupt(at.offset, "segment file is shorter than written"))
        }
        _ => Err(io_error("read", &shared.segment_path(at.segment))(error)),
    }
}

impl Position {
    /// The position `offset` bytes after this one, in the same segment.
    fn at(self, offset: usize) -> Position {
        Position {
            segment: self.segment,
            offset: self.offset + offset as u64,
        }
    }
}
