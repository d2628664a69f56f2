//! [`split_by`]: per-key batches of a body, as slices of it.

use std::collections::HashMap;

use bytes::Bytes;

use super::{lines, unescape_measurement, LineError, Span};

/// Splits `body` into per-key batches by the measurement of each line,
/// without copying line bytes.
///
/// Consecutive lines with the same key become one run: one
/// [`Bytes::slice`] of the body from the start of the first line's physical
/// line (leading whitespace included) to just past the newline after the
/// last one. Blank lines and comments between lines of a run stay in it;
/// those before a run's first line or after its last are left out. The
/// lines themselves are never changed.
///
/// `key_of` gets the unescaped measurement ([`unescape_measurement`]) and
/// is called once per distinct measurement as written: the last one is
/// cached, the others kept in a map. Returns `(key, runs)` pairs in order
/// of each key's first appearance, or the first [`LineError`] (then nothing
/// should be forwarded).
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

/// How many measurements [`Batches`] keeps in a list before using a map.
const FEW: usize = 16;

/// The state of one [`split_by`] call.
struct Batches<'a, K, F> {
    body: &'a Bytes,
    key_of: F,
    groups: Vec<(K, Vec<Bytes>)>,
    /// The last measurement seen and its group.
    last: Option<(&'a [u8], usize)>,
    /// The first [`FEW`] measurements seen and their groups (searched in
    /// order: cheaper than hashing for the few measurements of most bodies).
    few: Vec<(&'a [u8], usize)>,
    /// Any further measurements and their groups.
    more: HashMap<&'a [u8], usize>,
    /// The open run: its group and byte range.
    run: Option<(usize, usize, usize)>,
}

impl<'a, K: Copy + Eq, F: FnMut(&[u8]) -> K> Batches<'a, K, F> {
    fn new(body: &'a Bytes, key_of: F) -> Self {
        Batches {
            body,
            key_of,
            groups: Vec::new(),
            last: None,
            few: Vec::new(),
            more: HashMap::new(),
            run: None,
        }
    }

    /// Adds a line: it extends the open run if it has the same key.
    fn push(&mut self, span: Span<'a>) {
        let group = self.group_of(span.line.measurement);
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
            self.groups[group].1.push(self.body.slice(from..to));
        }
    }

    /// The index in `groups` of the key of `measurement`.
    fn group_of(&mut self, measurement: &'a [u8]) -> usize {
        if let Some((last, group)) = self.last {
            if last == measurement {
                return group;
            }
        }
        let group = match self.seen(measurement) {
            Some(group) => group,
            None => {
                let key = (self.key_of)(&unescape_measurement(measurement));
                let group = self.group_for_key(key);
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

    fn seen(&self, measurement: &[u8]) -> Option<usize> {
        match self.few.iter().find(|(m, _)| *m == measurement) {
            Some(&(_, group)) => Some(group),
            None => self.more.get(measurement).copied(),
        }
    }

    fn group_for_key(&mut self, key: K) -> usize {
        match self.groups.iter().position(|(k, _)| *k == key) {
            Some(group) => group,
            None => {
                self.groups.push((key, Vec::new()));
                self.groups.len() - 1
            }
        }
    }

    fn finish(mut self) -> Vec<(K, Vec<Bytes>)> {
        self.close_run();
        for (_, runs) in &mut self.groups {
            compact(runs);
        }
        self.groups
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
    let mut joined = bytes::BytesMut::with_capacity(total);
    for run in runs.iter() {
        joined.extend_from_slice(run);
    }
    *runs = vec![joined.freeze()];
}
