//! Line-protocol scanner: finds the lines of a write body and the
//! measurement of each, and splits a body into per-key batches.
//!
//! It is used only when a routing rule needs measurements (SPEC §5); a write
//! that no such rule touches is relayed without ever coming here. It must
//! never rewrite a line, copy a byte of the body more than once (batches
//! are [`bytes::Bytes::slice`]s of the body's chunks where runs of lines
//! are long, one copy where they are short), allocate per line, or panic
//! on any input.
//!
//! Here: the line iterator ([`lines`]) and where a line ends. The key of a
//! line (measurement and tags) and [`unescape_measurement`] are in
//! `key.rs`, [`LineError`] and its messages in `error.rs`, the per-key
//! batches in `split.rs`.
//!
//! # Where a line ends
//!
//! Exactly where InfluxDB 1.x's own scanner (`scanLine` in `models/points.go`)
//! ends it, so that the router and the nodes always agree on which bytes are
//! one point:
//!
//! * a line ends at a newline (`\n`), and a `\r` right before that newline is
//!   not part of the line (CRLF ends a line like LF; note that InfluxDB 1.x
//!   itself rejects lines that end in `\r`, and the lines are forwarded as
//!   they are);
//! * a backslash takes the byte after it with it, so an escaped newline does
//!   not end a line (except when that newline is the last byte of the body);
//! * after the first space of a line that is not escaped that way (the start
//!   of the field set), a `"` opens a quoted string when more `=` than `,`
//!   precede it in the field set outside strings (that is: in a field value),
//!   and closes it at the next `"` that is not escaped; newlines inside a
//!   string do not end the line. Spaces at the start of a line count as that
//!   first space, as they do in InfluxDB.
//!
//! Blank lines (only spaces, tabs, NUL bytes and a final `\r`) and comment
//! lines (whose first byte after those is `#`) are skipped.
//!
//! # What is checked
//!
//! Lines are numbered from 1 by physical line: blank lines, comments and
//! newlines inside strings all count. An error carries the number of the
//! physical line where the line starts, except an unterminated string, whose
//! error carries the number of the line where its opening quote is. The
//! scanner stops at the first error. It checks, per line:
//!
//! * **measurement**: after the leading spaces, tabs and NULs, the line must
//!   not start with `,` (an empty measurement). The measurement runs to the
//!   first `,` or space that is not right after a backslash, as in InfluxDB;
//! * **field set**: the measurement and tags must be followed by a space (not
//!   right after a backslash) and then something other than whitespace, so
//!   `cpu`, `cpu,host=a` and `cpu,host=a ` are errors;
//! * **strings**: a quoted string must be closed before the end of the body;
//! * **comments** must end at their newline: a comment where InfluxDB would
//!   read on past it (an open quote after a space and `=`, or an escaped
//!   newline) would silently swallow the lines after it, so it is refused.
//!
//! Nothing else is validated: tag syntax, field keys and values, and
//! timestamps are left to the nodes, whose own 400 reaches the client.
//!
//! # Measurements and batches
//!
//! [`Line::measurement`] is the measurement as written; routing rules match
//! [`unescape_measurement`] of it, the name InfluxDB stores.
//! [`split_payload`] groups the lines of a body by a key of their
//! measurement, run by run (consecutive lines with the same key), working
//! on the body's chunks as they arrived: they are never joined, long runs
//! stay slices of them, short runs are copied once into a buffer per key,
//! and the few lines that a chunk boundary cuts are scanned in a small
//! scratch buffer (see `split.rs`). [`split_by`] does the same on one
//! contiguous body with slices of it; it is the reference `split_payload`
//! is tested against.
//!
//! # Speed
//!
//! A line without quotes or backslashes (most of them) costs one `memchr3`
//! to its newline, a short `memchr2` for its measurement and a backwards
//! `memchr` from its end for its field set; quoted strings and escapes take
//! a few more `memchr` jumps. Nothing is allocated per line: see
//! `benches/line.rs` for the throughput.
//!
//! ```
//! use influxdb_router::protocol::line::lines;
//!
//! let body = b"# comment\ncpu,host=a usage=0.5 1\r\n\nlog msg=\"a\nb\" 2\n";
//! let found: Vec<_> = lines(body).map(|l| l.unwrap()).collect();
//! assert_eq!(found.len(), 2);
//! assert_eq!((found[0].number, found[0].measurement), (2, &b"cpu"[..]));
//! assert_eq!(found[0].text, b"cpu,host=a usage=0.5 1");
//! assert_eq!((found[1].number, found[1].text), (4, &b"log msg=\"a\nb\" 2"[..]));
//! ```

mod error;
mod key;
#[cfg(any(test, fuzzing))]
pub mod reference;
mod split;
#[cfg(test)]
mod tests;

pub use error::{LineError, EXCERPT_BYTES};
pub use key::unescape_measurement;
pub use split::{split_by, split_payload};

use std::iter::FusedIterator;

use memchr::{memchr, memchr3};

use error::{runaway_comment, unterminated_string};
use key::Key;

/// One line of a body: its byte range in the body (without the trailing
/// `\n` or `\r\n`, and without leading spaces, tabs and NULs), and its
/// measurement (escaped as written, e.g. `b"my\ measurement"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based number of the physical line where this line starts.
    pub number: usize,
    /// Offset of the line's first byte in the body.
    pub start: usize,
    /// Offset just past the line's last byte in the body.
    pub end: usize,
    /// `body[start..end]`.
    pub text: &'a [u8],
    /// The measurement as written, a prefix of `text`; never empty.
    pub measurement: &'a [u8],
}

/// Iterator over the non-empty, non-comment lines of `body`; see the module
/// documentation for where lines end and what is checked. After an error it
/// returns `None`.
pub fn lines(body: &[u8]) -> Lines<'_> {
    Lines::at(body, 0, 1)
}

/// The iterator returned by [`lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    body: &'a [u8],
    /// Where the next physical line starts.
    pos: usize,
    /// The physical line number at `pos` (or further on, inside a scan).
    line: usize,
    done: bool,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_span().map(|span| span.map(|s| s.line))
    }
}

impl FusedIterator for Lines<'_> {}

/// A line and the bytes a batch forwards for it.
struct Span<'a> {
    line: Line<'a>,
    /// Start of its physical line (leading whitespace included: InfluxDB's
    /// scanner gives a leading space a meaning).
    from: usize,
    /// Just past its newline (or the end of the body).
    to: usize,
}

/// Where [`Lines::find_end`] found a line to end.
struct End {
    /// The newline that ends the line, or the length of the body.
    at: usize,
    /// What was learnt about the measurement and tags on the way.
    key: Key,
    /// Offset and line number of a quote still open at the end of the body.
    open_quote: Option<(usize, usize)>,
}

impl<'a> Lines<'a> {
    /// The lines of `body` from `pos`, where physical line `line` starts.
    fn at(body: &'a [u8], pos: usize, line: usize) -> Self {
        Lines {
            body,
            pos,
            line,
            done: false,
        }
    }

    /// The next line with its span, skipping blank lines and comments.
    fn next_span(&mut self) -> Option<Result<Span<'a>, LineError>> {
        while !self.done && self.pos < self.body.len() {
            match self.scan_line() {
                Ok(Some(span)) => return Some(Ok(span)),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }

    /// Scans the physical line at `pos` and moves past its end: `None` for
    /// a blank line or a comment.
    fn scan_line(&mut self) -> Result<Option<Span<'a>>, LineError> {
        let (body, from, number) = (self.body, self.pos, self.line);
        let start = skip_blanks(body, from);
        let first_space = match start > from {
            true => memchr(b' ', &body[from..start]).map(|o| from + o),
            false => None,
        };
        let end = self.find_end(start, first_space);
        let spans_lines = self.line != number;
        let text_end = strip_cr(body, start, end.at);
        (self.pos, self.line) = match end.at < body.len() {
            true => (end.at + 1, self.line + 1),
            false => (end.at, self.line),
        };
        if start >= text_end {
            return Ok(None);
        }
        let text = &body[start..text_end];
        if text[0] == b'#' {
            return match spans_lines {
                true => Err(runaway_comment(number, text)),
                false => Ok(None),
            };
        }
        let measurement_end = self.check_key(number, start, text_end, end.key)?;
        if let Some((quote, line)) = end.open_quote {
            return Err(unterminated_string(line, &body[quote..]));
        }
        let line = Line {
            number,
            start,
            end: text_end,
            text,
            measurement: &body[start..measurement_end],
        };
        let to = self.pos;
        Ok(Some(Span { line, from, to }))
    }

    /// Where InfluxDB 1.x's `scanLine` ends the line whose first non-blank
    /// byte is at `start`; `first_space` is the first space before it.
    /// Counts the newlines it passes inside the line in `self.line`.
    fn find_end(&mut self, start: usize, first_space: Option<usize>) -> End {
        if first_space.is_none() {
            if let Some(end) = self.find_plain_end(start) {
                return end;
            }
        }
        let mut key = Key::Unknown;
        let field_set = match first_space {
            Some(space) => space,
            None => match self.find_first_space(start) {
                (space, true, escaped) => {
                    if !escaped {
                        key = Key::EndsAt(space);
                    }
                    space
                }
                (at, false, _) => return End::new(at, Key::Unknown),
            },
        };
        let (at, open_quote) = self.find_field_set_end(field_set, field_set);
        End {
            at,
            key,
            open_quote,
        }
    }

    /// [`Self::find_end`] for the common cases: no quote or backslash before
    /// the newline, or a quote in the field set (after a space) before any
    /// backslash. `None` for the others.
    fn find_plain_end(&mut self, start: usize) -> Option<End> {
        let body = self.body;
        let Some(j) = memchr3(b'"', b'\n', b'\\', &body[start..]).map(|o| start + o) else {
            return Some(End::new(body.len(), Key::Plain));
        };
        match body[j] {
            b'\n' => Some(End::new(j, Key::Plain)),
            b'"' => {
                let space = start + memchr(b' ', &body[start..j])?;
                let (at, open_quote) = self.find_field_set_end(space, j);
                let key = Key::EndsAt(space);
                Some(End {
                    at,
                    key,
                    open_quote,
                })
            }
            _ => None,
        }
    }

    /// `scanLine` before the field set: the first space that is not escaped
    /// (`.1` true), else the end of the line (`.1` false); `.2` says whether
    /// a backslash came first.
    fn find_first_space(&mut self, mut i: usize) -> (usize, bool, bool) {
        let mut escaped = false;
        loop {
            let Some(o) = memchr3(b' ', b'\n', b'\\', &self.body[i..]) else {
                return (self.body.len(), false, escaped);
            };
            let j = i + o;
            match self.body[j] {
                b' ' => return (j, true, escaped),
                b'\n' => return (j, false, escaped),
                _ => {
                    escaped = true;
                    i = self.skip_escape(j);
                }
            }
        }
    }

    /// `scanLine` from the space at `space` that starts the field set: the
    /// newline that ends the line (or the end of the body), and the
    /// position and line of a quote left open at the end of the body.
    /// `space..i` must hold no quote, newline or backslash.
    fn find_field_set_end(
        &mut self,
        space: usize,
        mut i: usize,
    ) -> (usize, Option<(usize, usize)>) {
        // `=` minus `,` seen outside strings: a quote opens a string when > 0.
        let mut balance = 0isize;
        let mut counted = space;
        loop {
            let Some(o) = memchr3(b'"', b'\n', b'\\', &self.body[i..]) else {
                return (self.body.len(), None);
            };
            let j = i + o;
            match self.body[j] {
                b'\n' => return (j, None),
                b'\\' => {
                    balance += equals_minus_commas(&self.body[counted..j]);
                    i = self.skip_escape(j);
                }
                _ => {
                    balance += equals_minus_commas(&self.body[counted..j]);
                    i = j + 1;
                    if balance > 0 {
                        let open = (j, self.line);
                        match self.find_string_end(i) {
                            Some(after) => i = after,
                            None => return (self.body.len(), Some(open)),
                        }
                    }
                }
            }
            counted = i;
        }
    }

    /// Just past the quote that closes the string whose contents start at
    /// `i`; `None` if the body ends first.
    fn find_string_end(&mut self, mut i: usize) -> Option<usize> {
        loop {
            let j = i + memchr3(b'"', b'\\', b'\n', &self.body[i..])?;
            match self.body[j] {
                b'"' => return Some(j + 1),
                b'\n' => {
                    self.line += 1;
                    i = j + 1;
                }
                _ => i = self.skip_escape(j),
            }
        }
    }

    /// Past the backslash at `j` and the byte it escapes, as `scanLine`
    /// does: not when that byte is the last one of the body.
    fn skip_escape(&mut self, j: usize) -> usize {
        if j + 2 >= self.body.len() {
            return j + 1;
        }
        if self.body[j + 1] == b'\n' {
            self.line += 1;
        }
        j + 2
    }
}

impl End {
    /// A line that ends at `at` without an open quote.
    fn new(at: usize, key: Key) -> End {
        End {
            at,
            key,
            open_quote: None,
        }
    }
}
/// The first offset from `i` that is not a space, tab or NUL (InfluxDB's
/// `skipWhitespace`), or `body.len()`.
fn skip_blanks(body: &[u8], mut i: usize) -> usize {
    while i < body.len() && matches!(body[i], b' ' | b'\t' | 0) {
        i += 1;
    }
    i
}

/// The end of a line's text that ends at `at`: before a `\r` that precedes
/// the newline at `at`.
fn strip_cr(body: &[u8], start: usize, at: usize) -> usize {
    if at < body.len() && at > start && body[at - 1] == b'\r' {
        at - 1
    } else {
        at
    }
}

/// `=` minus `,` in `bytes` (counted in byte-wide lanes, which vectorise).
fn equals_minus_commas(bytes: &[u8]) -> isize {
    let mut n = 0;
    for chunk in bytes.chunks(255) {
        let (mut equals, mut commas) = (0u8, 0u8);
        for &b in chunk {
            equals += u8::from(b == b'=');
            commas += u8::from(b == b',');
        }
        n += isize::from(equals) - isize::from(commas);
    }
    n
}
