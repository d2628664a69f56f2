//! The key of a line (its measurement and tags): where the measurement
//! and the key end, InfluxDB's way, checking that a field set follows
//! ([`Lines::check_key`]), and the measurement as InfluxDB stores it
//! ([`unescape_measurement`]).

use std::borrow::Cow;

use memchr::{memchr, memchr2, memrchr};

use super::error::{missing_field_set, missing_measurement};
use super::{skip_blanks, LineError, Lines};

/// What [`Lines::find_end`] learnt about the key (measurement and tags).
#[derive(Clone, Copy)]
pub(super) enum Key {
    /// No quote, backslash or leading space in the line: the measurement
    /// ends at the first `,` or space, the key at the first space.
    Plain,
    /// The key ends at this space, the line's first, with no backslash
    /// before it (and no leading space).
    EndsAt(usize),
    /// To be scanned InfluxDB's way ([`key_ends`]).
    Unknown,
}

impl Lines<'_> {
    /// Checks the measurement and that a field set follows the key of the
    /// line in `start..end`; returns the end of the measurement.
    pub(super) fn check_key(
        &self,
        number: usize,
        start: usize,
        end: usize,
        key: Key,
    ) -> Result<usize, LineError> {
        let body = self.body;
        let text = &body[start..end];
        if text[0] == b',' {
            return Err(missing_measurement(number, text));
        }
        let after = |m: usize| start + 1 + m;
        let measurement_end = match key {
            Key::Plain => {
                let m = memchr2(b',', b' ', &body[start + 1..end]).map_or(end, after);
                has_space_before_last_non_blank(&body[m..end]).then_some(m)
            }
            Key::EndsAt(k) => {
                let m = memchr(b',', &body[start + 1..k]).map_or(k, after);
                (skip_blanks(&body[..end], k + 1) < end).then_some(m)
            }
            Key::Unknown => match key_ends(body, start, end) {
                (m, Some(k)) => (skip_blanks(&body[..end], k + 1) < end).then_some(m),
                (_, None) => None,
            },
        };
        measurement_end.ok_or_else(|| missing_field_set(number, text))
    }
}

/// Whether `text` has a space before its last byte that is not a space,
/// tab or NUL.
fn has_space_before_last_non_blank(text: &[u8]) -> bool {
    let mut last = text.len();
    while last > 0 && matches!(text[last - 1], b' ' | b'\t' | 0) {
        last -= 1;
    }
    last > 1 && memrchr(b' ', &text[..last - 1]).is_some()
}

/// The ends of the measurement and of the key (measurement and tags) of
/// the line in `start..end`, InfluxDB's way: a `,` or space that is not
/// right after a backslash. The key end is `None` when no space ends it.
fn key_ends(body: &[u8], start: usize, end: usize) -> (usize, Option<usize>) {
    match find_unescaped(body, start + 1, end, b',', b' ') {
        None => (end, None),
        Some(m) if body[m] == b' ' => (m, Some(m)),
        Some(m) => (m, find_unescaped(body, m + 1, end, b' ', b' ')),
    }
}

/// The first `a` or `b` in `body[from..to]` whose previous byte is not a
/// backslash (`from` must be at least 1).
fn find_unescaped(body: &[u8], mut from: usize, to: usize, a: u8, b: u8) -> Option<usize> {
    while from < to {
        let j = from + memchr2(a, b, &body[from..to])?;
        if body[j - 1] != b'\\' {
            return Some(j);
        }
        from = j + 1;
    }
    None
}

/// The measurement as InfluxDB 1.x stores it: `\,`, `\ `, `\=` and `\"`
/// become `,`, ` `, `=` and `"` (InfluxDB's `escape.Unescape`, which it
/// applies to measurement names even though only `\,` and `\ ` are
/// documented); any other backslash stays. Borrowed when there is nothing
/// to unescape.
pub fn unescape_measurement(raw: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = first_escape(raw) else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut i = first;
    while i < raw.len() {
        if raw[i] == b'\\' && raw.get(i + 1).is_some_and(|&b| is_escapable(b)) {
            i += 1;
        }
        out.push(raw[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// The offset of the first backslash in `raw` that escapes something.
fn first_escape(raw: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let i = from + memchr(b'\\', &raw[from..])?;
        if raw.get(i + 1).is_some_and(|&b| is_escapable(b)) {
            return Some(i);
        }
        from = i + 1;
    }
}

fn is_escapable(b: u8) -> bool {
    matches!(b, b',' | b' ' | b'=' | b'"')
}
