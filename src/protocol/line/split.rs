//! Per-key batches of a body: [`split_payload`] for a body in chunks as it
//! arrived (what the router uses), [`split_by`] for one contiguous buffer
//! (the simpler original, kept as the reference the first is tested
//! against).
//!
//! # What is copied
//!
//! [`split_payload`] never joins the chunks of a body. It scans each chunk
//! in place and cuts the body into runs (consecutive lines with the same
//! key); each run's bytes go to its key's output once, chunk by chunk:
//!
//! * the part of a run in one chunk that is at least [`LONG_RUN`] bytes
//!   long stays a zero-copy [`Bytes::slice`] of that chunk;
//! * shorter parts (the usual case when lines alternate between keys) are
//!   copied straight into the key's output buffers, of [`OUT_CHUNK`] bytes
//!   each (less for a smaller body), filled to the brim and never grown:
//!   that is the only copy of those bytes.
//!
//! A line that runs past the end of a chunk (a chunk boundary falls inside
//! it, or right after its newline) is scanned in a small scratch buffer
//! instead: the rest of its chunk, then the following bytes through the
//! next newline and one byte more, so that a newline escaped by a backslash
//! at a chunk's end, a `\r` before a newline in the next chunk, or a quoted
//! string that goes on is seen as in the whole body. If the line is still
//! not over at the end of the buffer (a string holding newlines), at least
//! as many bytes again are added, so a line over many chunks is scanned a
//! bounded number of times (linear in its length). The scratch buffer is
//! only read to find where the line ends and what its measurement is; the
//! line's bytes reach the output from the chunks like any other. So apart
//! from those few lines (about one per chunk), each byte of the body is
//! read by the scanner once and copied at most once.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use memchr::memchr;

use super::{lines, unescape_measurement, LineError, Lines, Span};
use crate::payload::Payload;

/// Splits a body in chunks into per-key batches by the measurement of
/// each line, without joining the chunks (see the module documentation for
/// what is copied).
///
/// Returns what [`split_by`] returns for the contiguous body, cut into
/// chunks differently: for each key, the concatenation of its payload's
/// chunks is the concatenation of its runs from [`split_by`] (same lines,
/// same skipped lines kept inside runs, same order); keys come in the same
/// order; `key_of` gets the same calls; an error is the same
/// [`LineError`].
pub fn split_payload<K: Copy + Eq>(
    payload: &Payload,
    key_of: impl FnMut(&[u8]) -> K,
) -> Result<Vec<(K, Payload)>, LineError> {
    let chunks = payload.chunks();
    let mut split = Chunked::new(chunks, key_of);
    let mut at = Pos::default().advance(chunks, 0);
    let mut number = 1;
    while let Some(chunk) = chunks.get(at.chunk) {
        let base = at.global - at.offset;
        let last = at.chunk + 1 == chunks.len();
        let pos = |offset: usize| Pos {
            chunk: at.chunk,
            offset,
            global: base + offset,
        };
        let mut lines = Lines::at(chunk, at.offset, number);
        let mut cut = None;
        while lines.pos < chunk.len() {
            let (from, line) = (lines.pos, lines.line);
            let scanned = lines.scan_line();
            // A line that reached the end of a chunk, or a newline at its
            // last byte, may go on in the next chunk: its result is not
            // trusted (see `Chunked::cross`). Any line that ends at a
            // newline before the last byte was scanned as in the whole body.
            if lines.pos == chunk.len() && !last {
                cut = Some((from, line));
                break;
            }
            if let Some(span) = scanned? {
                let group = split.group_of(span.line.measurement);
                split.push(group, pos(span.from), pos(span.to));
            }
        }
        (at, number) = match cut {
            Some((from, line)) => split.cross(pos(from), line, chunk.len() - from)?,
            None => (pos(chunk.len()).advance(chunks, 0), lines.line),
        };
    }
    Ok(split.finish())
}

/// Splits `body` into per-key batches by the measurement of each line,
/// without copying line bytes (except to join many short runs, below).
///
/// Consecutive lines with the same key become one run: one
/// [`Bytes::slice`] of the body from the start of the first line's physical
/// line (leading whitespace included) to just past the newline after the
/// last one. Blank lines and comments between lines of a run stay in it;
/// those before a run's first line or after its last are left out. The
/// lines themselves are never changed. A key with more than 16 runs
/// averaging under 16 KiB gets them joined into one buffer.
///
/// `key_of` gets the unescaped measurement ([`unescape_measurement`]) and
/// is called once per distinct measurement as written: the last one is
/// cached, the others kept in a map. Returns `(key, runs)` pairs in order
/// of each key's first appearance, or the first [`LineError`] (then nothing
/// should be forwarded).
///
/// The router splits with [`split_payload`], which takes the body in
/// chunks; this one stays as the simpler reference it is tested against.
pub fn split_by<K: Copy + Eq>(
    body: &Bytes,
    key_of: impl FnMut(&[u8]) -> K,
) -> Result<Vec<(K, Vec<Bytes>)>, LineError> {
    let mut batches = Batches::new(body, key_of);
    let mut spans = lines(body);
    while let Some(span) = spans.next_span() {
        batches.push(span?);
    }
    Ok(batches.finish())
}

/// How many measurements [`Keys`] keeps in a list before using a map.
const FEW: usize = 16;

/// The groups of a split: one per distinct key, numbered in order of first
/// appearance, and which measurement (as written) has which.
struct Keys<'a, K, F> {
    key_of: F,
    /// The key of each group.
    keys: Vec<K>,
    /// The last measurement seen and its group.
    last: Option<(&'a [u8], usize)>,
    /// The first [`FEW`] measurements seen and their groups (searched in
    /// order: cheaper than hashing for the few measurements of most bodies).
    few: Vec<(&'a [u8], usize)>,
    /// Any further measurements and their groups.
    more: HashMap<&'a [u8], usize>,
    /// Measurements first read from a line scanned in the scratch buffer
    /// of [`split_payload`] (which is reused, so they are copied).
    copied: Vec<(Vec<u8>, usize)>,
}

impl<'a, K: Copy + Eq, F: FnMut(&[u8]) -> K> Keys<'a, K, F> {
    fn new(key_of: F) -> Self {
        Keys {
            key_of,
            keys: Vec::new(),
            last: None,
            few: Vec::new(),
            more: HashMap::new(),
            copied: Vec::new(),
        }
    }

    /// The group of `measurement`, calling `key_of` if it is new.
    fn group_of(&mut self, measurement: &'a [u8]) -> usize {
        if let Some((last, group)) = self.last {
            if last == measurement {
                return group;
            }
        }
        let group = match self.seen(measurement) {
            Some(group) => group,
            None => {
                let group = match self.seen_copied(measurement) {
                    Some(group) => group,
                    None => self.new_group(measurement),
                };
                match self.few.len() < FEW {
                    true => self.few.push((measurement, group)),
                    false => _ = self.more.insert(measurement, group),
                }
                group
            }
        };
        self.last = Some((measurement, group));
        group
    }

    /// [`Self::group_of`] for a measurement that does not outlive the call.
    fn group_of_copy(&mut self, measurement: &[u8]) -> usize {
        if let Some(group) = self
            .seen(measurement)
            .or_else(|| self.seen_copied(measurement))
        {
            return group;
        }
        let group = self.new_group(measurement);
        self.copied.push((measurement.to_vec(), group));
        group
    }

    fn seen(&self, measurement: &[u8]) -> Option<usize> {
        match self.few.iter().find(|(m, _)| *m == measurement) {
            Some(&(_, group)) => Some(group),
            None => self.more.get(measurement).copied(),
        }
    }

    fn seen_copied(&self, measurement: &[u8]) -> Option<usize> {
        let found = self.copied.iter().find(|(m, _)| m == measurement);
        found.map(|&(_, group)| group)
    }

    /// Calls `key_of` for a measurement not seen yet: its key's group.
    fn new_group(&mut self, measurement: &[u8]) -> usize {
        let key = (self.key_of)(&unescape_measurement(measurement));
        match self.keys.iter().position(|k| *k == key) {
            Some(group) => group,
            None => {
                self.keys.push(key);
                self.keys.len() - 1
            }
        }
    }
}

/// The state of one [`split_by`] call.
struct Batches<'a, K, F> {
    body: &'a Bytes,
    keys: Keys<'a, K, F>,
    /// The runs of each group.
    runs: Vec<Vec<Bytes>>,
    /// The open run: its group and byte range.
    run: Option<(usize, usize, usize)>,
}

impl<'a, K: Copy + Eq, F: FnMut(&[u8]) -> K> Batches<'a, K, F> {
    fn new(body: &'a Bytes, key_of: F) -> Self {
        Batches {
            body,
            keys: Keys::new(key_of),
            runs: Vec::new(),
            run: None,
        }
    }

    /// Adds a line: it extends the open run if it has the same key.
    fn push(&mut self, span: Span<'a>) {
        let group = self.keys.group_of(span.line.measurement);
        if group == self.runs.len() {
            self.runs.push(Vec::new());
        }
        match &mut self.run {
            Some((g, _, to)) if *g == group => *to = span.to,
            _ => {
                self.close_run();
                self.run = Some((group, span.from, span.to));
            }
        }
    }

    fn close_run(&mut self) {
        if let Some((group, from, to)) = self.run.take() {
            self.runs[group].push(self.body.slice(from..to));
        }
    }

    fn finish(mut self) -> Vec<(K, Vec<Bytes>)> {
        self.close_run();
        for runs in &mut self.runs {
            compact(runs);
        }
        self.keys.keys.into_iter().zip(self.runs).collect()
    }
}

/// Runs per group above which short runs are copied into one buffer.
const MANY_RUNS: usize = 16;
/// Average run length below which copying beats sending the runs as chunks.
const SHORT_RUN: usize = 16 * 1024;

/// Copies many short runs into one buffer. Slices cost nothing to make, but
/// each is a separate piece for the socket writes to every node; for lines
/// whose clusters alternate, one copy (at memory speed) is far cheaper.
fn compact(runs: &mut Vec<Bytes>) {
    let total: usize = runs.iter().map(Bytes::len).sum();
    if runs.len() <= MANY_RUNS || total / runs.len() >= SHORT_RUN {
        return;
    }
    let mut joined = BytesMut::with_capacity(total);
    for run in runs.iter() {
        joined.extend_from_slice(run);
    }
    *runs = vec![joined.freeze()];
}

/// The part of a run in one chunk that [`split_payload`] sends as a slice
/// of the chunk rather than copying it (the same threshold as
/// [`SHORT_RUN`]: below it, one more piece for every socket write costs
/// more than the copy).
const LONG_RUN: usize = 16 * 1024;

/// The size of the buffers [`split_payload`] copies short runs into (less
/// for a smaller body): a key's output is a few such chunks, each filled
/// to the brim, never grown (which would copy them again).
const OUT_CHUNK: usize = 64 * 1024;

/// A position in a body in chunks. Normalised positions (from
/// [`Pos::advance`]) are never at the end of a chunk, but at the start of
/// the next one (`chunk` is the number of chunks at the end of the body).
#[derive(Debug, Clone, Copy, Default)]
struct Pos {
    /// Index of the chunk.
    chunk: usize,
    /// Offset in that chunk.
    offset: usize,
    /// Offset in the whole body.
    global: usize,
}

impl Pos {
    /// The normalised position `n` bytes further on.
    fn advance(mut self, chunks: &[Bytes], mut n: usize) -> Pos {
        self.global += n;
        while let Some(chunk) = chunks.get(self.chunk) {
            let left = chunk.len().saturating_sub(self.offset);
            if n < left {
                self.offset += n;
                return self;
            }
            n -= left;
            self.chunk += 1;
            self.offset = 0;
        }
        self
    }
}

/// The rest of the chunk at a normalised position; `None` at the end.
fn rest_at(chunks: &[Bytes], at: Pos) -> Option<&[u8]> {
    let rest = chunks.get(at.chunk)?.get(at.offset..)?;
    (!rest.is_empty()).then_some(rest)
}

/// Appends the bytes from `at` to `carry`: at least `want` bytes, then
/// through the next newline, then one byte more, so that the newline is
/// the last byte only at the end of the body (fewer if the body ends
/// first). Returns the position after them.
fn append(chunks: &[Bytes], mut at: Pos, carry: &mut Vec<u8>, mut want: usize) -> Pos {
    while want > 0 {
        let Some(rest) = rest_at(chunks, at) else {
            return at;
        };
        let n = want.min(rest.len());
        carry.extend_from_slice(&rest[..n]);
        at = at.advance(chunks, n);
        want -= n;
    }
    loop {
        let Some(rest) = rest_at(chunks, at) else {
            return at;
        };
        let newline = memchr(b'\n', rest);
        let n = newline.map_or(rest.len(), |i| i + 1);
        carry.extend_from_slice(&rest[..n]);
        at = at.advance(chunks, n);
        if newline.is_some() {
            break;
        }
    }
    if let Some(rest) = rest_at(chunks, at) {
        carry.push(rest[0]);
        at = at.advance(chunks, 1);
    }
    at
}

/// One key's output in [`split_payload`]: slices of the body's chunks and
/// buffers holding copies of short runs, in order.
#[derive(Default)]
struct Out {
    chunks: Vec<Bytes>,
    /// Where short runs are copied; its filled part goes to `chunks` before
    /// a slice or when it is full.
    buf: BytesMut,
}

impl Out {
    /// Adds `chunk[from..to]`: a slice if long, else a copy. `left` is what
    /// remains of the body from `from` on (no key gets more than that).
    fn put(&mut self, chunk: &Bytes, from: usize, to: usize, left: usize) {
        if to - from >= LONG_RUN {
            self.flush();
            self.chunks.push(chunk.slice(from..to));
            return;
        }
        let mut bytes = &chunk[from..to];
        while !bytes.is_empty() {
            let room = self.buf.capacity() - self.buf.len();
            if room == 0 {
                self.flush();
                let left = left.saturating_sub(to - from - bytes.len());
                let size = left.min(OUT_CHUNK).max(bytes.len());
                self.buf = BytesMut::with_capacity(size);
                continue;
            }
            let n = room.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
    }

    /// Moves the filled part of `buf` to `chunks`; `buf` keeps the rest of
    /// its capacity.
    fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.chunks.push(self.buf.split().freeze());
        }
    }

    fn finish(mut self) -> Payload {
        self.flush();
        Payload::from_chunks(self.chunks)
    }
}

/// The state of one [`split_payload`] call.
struct Chunked<'a, K, F> {
    chunks: &'a [Bytes],
    /// The length of the body.
    len: usize,
    keys: Keys<'a, K, F>,
    /// The output of each group.
    outs: Vec<Out>,
    /// The open run: its group and where it starts and ends.
    run: Option<(usize, Pos, Pos)>,
    /// Scratch buffer for a line that crosses chunks ([`Self::cross`]).
    carry: Vec<u8>,
}

impl<'a, K: Copy + Eq, F: FnMut(&[u8]) -> K> Chunked<'a, K, F> {
    fn new(chunks: &'a [Bytes], key_of: F) -> Self {
        Chunked {
            chunks,
            len: chunks.iter().map(Bytes::len).sum(),
            keys: Keys::new(key_of),
            outs: Vec::new(),
            run: None,
            carry: Vec::new(),
        }
    }

    /// The group of a measurement in a chunk.
    fn group_of(&mut self, measurement: &'a [u8]) -> usize {
        let group = self.keys.group_of(measurement);
        if group == self.outs.len() {
            self.outs.push(Out::default());
        }
        group
    }

    /// Adds a line: it extends the open run if it has the same key.
    fn push(&mut self, group: usize, from: Pos, to: Pos) {
        match &mut self.run {
            Some((g, _, end)) if *g == group => *end = to,
            _ => {
                self.close_run();
                self.run = Some((group, from, to));
            }
        }
    }

    /// Puts the open run into its group's output, chunk by chunk.
    fn close_run(&mut self) {
        let Some((group, from, to)) = self.run.take() else {
            return;
        };
        let Some(out) = self.outs.get_mut(group) else {
            return;
        };
        let mut at = from;
        while at.chunk <= to.chunk {
            let Some(chunk) = self.chunks.get(at.chunk) else {
                break;
            };
            let end = match at.chunk == to.chunk {
                true => to.offset.min(chunk.len()),
                false => chunk.len(),
            };
            if end > at.offset {
                out.put(chunk, at.offset, end, self.len.saturating_sub(at.global));
                at.global += end - at.offset;
            }
            at.chunk += 1;
            at.offset = 0;
        }
    }

    /// Scans the line at `start` (physical line `number`), which the end
    /// of its chunk (`tail` bytes after `start`) cut or may have cut, in
    /// `carry`; adds it, and returns where the next line starts and its
    /// number.
    fn cross(&mut self, start: Pos, number: usize, tail: usize) -> Result<(Pos, usize), LineError> {
        self.carry.clear();
        let (mut read, mut want) = (start, tail);
        loop {
            read = append(self.chunks, read, &mut self.carry, want);
            let at_end = read.chunk >= self.chunks.len();
            let mut lines = Lines::at(&self.carry, 0, number);
            let scanned = lines.scan_line();
            if lines.pos < self.carry.len() || at_end {
                let group = match scanned? {
                    Some(span) => Some(self.keys.group_of_copy(span.line.measurement)),
                    None => None,
                };
                let (end, next) = (start.advance(self.chunks, lines.pos), lines.line);
                if let Some(group) = group {
                    if group == self.outs.len() {
                        self.outs.push(Out::default());
                    }
                    self.push(group, start, end);
                }
                return Ok((end, next));
            }
            want = self.carry.len();
        }
    }

    fn finish(mut self) -> Vec<(K, Payload)> {
        self.close_run();
        let outs = self.outs.into_iter().map(Out::finish);
        self.keys.keys.into_iter().zip(outs).collect()
    }
}

#[cfg(test)]
mod tests;
