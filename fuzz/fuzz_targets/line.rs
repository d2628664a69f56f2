//! Fuzzes the line-protocol scanner and `split_by`.
//!
//! Invariants: never panics; lines come in order without overlapping, each
//! `text` is `body[start..end]` and starts with its non-empty measurement,
//! and its number is one more than the newlines before it; the bytes
//! between lines are only newlines (`\n` or `\r\n`), blank lines, one-line
//! comments and leading whitespace, so the lines plus the skipped bytes are
//! the input; after an error the iterator stays empty; line ends, measurements
//! and the error line agree with a byte-by-byte port of InfluxDB 1.8's
//! scanner; `split_by` returns slices of the body that hold every line
//! exactly once, under the key of its measurement, calls `key_of` once per
//! distinct measurement and fails on the same line as `lines`;
//! `split_payload` on the body cut into chunks (single bytes, and lengths
//! taken from the input's own bytes) gives each key the same bytes as
//! `split_by`, calls `key_of` the same way and fails with the same error;
//! `unescape_measurement` borrows exactly when there is nothing to unescape.
//!
//! Run from the repository root (new inputs go to the git-ignored corpus):
//!
//! ```text
//! cargo +nightly fuzz run line -- -max_total_time=70
//! ```

#![no_main]

use std::borrow::Cow;
use std::collections::HashSet;

use bytes::Bytes;
use influxdb_router::protocol::line::reference::reference;
use influxdb_router::payload::Payload;
use influxdb_router::protocol::line::{
    lines, split_by, split_payload, unescape_measurement, Line, LineError,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (found, error) = scan(data);
    check_lines(data, &found, error.is_some());
    check_against_influxdb(data, &found, error);
    check_split_by(data, &found, error);
    check_split_payload(data);
    for line in &found {
        check_unescape(line.measurement);
    }
});

/// Every line up to the first error, and that error's line.
fn scan(body: &[u8]) -> (Vec<Line<'_>>, Option<usize>) {
    let mut it = lines(body);
    let mut found = Vec::new();
    for line in it.by_ref() {
        match line {
            Ok(line) => found.push(line),
            Err(e) => {
                assert!(e.message.len() < 400, "overlong message {:?}", e.message);
                assert!(it.next().is_none(), "lines after an error");
                return (found, Some(e.line));
            }
        }
    }
    (found, None)
}

fn check_lines(body: &[u8], found: &[Line<'_>], failed: bool) {
    let mut previous_end = None;
    for line in found {
        assert!(line.start < line.end && line.end <= body.len());
        assert_eq!(line.text, &body[line.start..line.end]);
        assert!(!line.measurement.is_empty(), "empty measurement");
        assert!(line.text.starts_with(line.measurement));
        let newlines = body[..line.start].iter().filter(|&&b| b == b'\n').count();
        assert_eq!(line.number, newlines + 1, "wrong line number");
        let gap_start = previous_end.unwrap_or(0);
        assert!(gap_start <= line.start, "lines overlap or are out of order");
        check_gap(&body[gap_start..line.start], previous_end.is_some(), true);
        previous_end = Some(line.end);
    }
    if !failed {
        let gap_start = previous_end.unwrap_or(0);
        check_gap(&body[gap_start..], previous_end.is_some(), false);
    }
}

/// The bytes between two lines (or before the first, or after the last):
/// the newline ending the previous line, whole blank or comment lines, and
/// the leading whitespace of the next line.
fn check_gap(gap: &[u8], after_line: bool, before_line: bool) {
    let mut rest = gap;
    if after_line {
        rest = match rest {
            [b'\r', b'\n', more @ ..] | [b'\n', more @ ..] => more,
            [] if !before_line => return,
            _ => panic!("a line does not end at a newline: {gap:?}"),
        };
    }
    let mut pieces = rest.split(|&b| b == b'\n').peekable();
    while let Some(piece) = pieces.next() {
        let text = trim_blanks(piece);
        let last = pieces.peek().is_none();
        let ok = match (last, before_line) {
            (true, true) => text.is_empty(),
            (true, false) => text.is_empty() || text[0] == b'#',
            (false, _) => text.is_empty() || text == b"\r" || text[0] == b'#',
        };
        assert!(
            ok,
            "skipped bytes {piece:?} are not blank or a comment in {gap:?}"
        );
    }
}

fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let blanks = bytes
        .iter()
        .take_while(|&&b| matches!(b, b' ' | b'\t' | 0))
        .count();
    &bytes[blanks..]
}

fn check_against_influxdb(body: &[u8], found: &[Line<'_>], error: Option<usize>) {
    let ours: Vec<_> = found
        .iter()
        .map(|l| (l.number, l.start, l.end, l.start + l.measurement.len()))
        .collect();
    let (expected, expected_error) = reference(body);
    assert_eq!(
        (ours, error),
        (expected, expected_error),
        "differs from influxdb"
    );
}

fn check_split_by(data: &[u8], found: &[Line<'_>], error: Option<usize>) {
    let body = Bytes::copy_from_slice(data);
    let mut calls = Vec::new();
    let result = split_by(&body, |m| {
        calls.push(m.to_vec());
        m.first().copied()
    });
    let batches = match (result, error) {
        (Ok(batches), None) => batches,
        (Err(e), Some(line)) => return assert_eq!(e.line, line),
        (result, error) => panic!("split_by {result:?} but lines stopped at {error:?}"),
    };
    let distinct: HashSet<&[u8]> = found.iter().map(|l| l.measurement).collect();
    assert_eq!(calls.len(), distinct.len(), "key_of called more than once");
    let mut runs = Vec::new();
    for (key, slices) in &batches {
        assert!(!slices.is_empty(), "a key without runs");
        for slice in slices {
            let start = slice.as_ptr() as usize - body.as_ptr() as usize;
            assert!(start + slice.len() <= body.len(), "a run outside the body");
            runs.push((start, start + slice.len(), *key));
        }
    }
    runs.sort_unstable();
    assert!(runs.windows(2).all(|w| w[0].1 <= w[1].0), "runs overlap");
    let mut next_run = runs.iter().peekable();
    for line in found {
        while next_run.peek().is_some_and(|r| r.1 <= line.start) {
            next_run.next();
        }
        let run = next_run.peek().expect("a line outside every run");
        assert!(
            run.0 <= line.start && line.end <= run.1,
            "a line cut by a run"
        );
        let key = unescape_measurement(line.measurement).first().copied();
        assert_eq!(run.2, key, "a line under another key");
    }
}

/// Per key, its bytes; and the measurements `key_of` got.
type Flat = (Result<Vec<(Option<u8>, Vec<u8>)>, LineError>, Vec<Vec<u8>>);

fn check_split_payload(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    let mut calls = Vec::new();
    let batches = split_by(&body, |m| {
        calls.push(m.to_vec());
        m.first().copied()
    });
    let join = |(k, runs): (Option<u8>, Vec<Bytes>)| (k, runs.concat());
    let expected: Flat = (batches.map(|b| b.into_iter().map(join).collect()), calls);
    let bytes = Payload::from_chunks((0..body.len()).map(|i| body.slice(i..i + 1)).collect());
    let mut steered = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let to = (at + 1 + usize::from(data[at] % 17)).min(body.len());
        steered.push(body.slice(at..to));
        at = to;
    }
    for payload in [bytes, Payload::from_chunks(steered)] {
        let mut calls = Vec::new();
        let batches = split_payload(&payload, |m| {
            calls.push(m.to_vec());
            m.first().copied()
        });
        let join = |(k, p): (Option<u8>, Payload)| (k, p.chunks().concat());
        let found: Flat = (batches.map(|b| b.into_iter().map(join).collect()), calls);
        assert_eq!(found, expected, "split_payload differs from split_by");
    }
}

fn check_unescape(raw: &[u8]) {
    let escapes = raw
        .windows(2)
        .any(|w| w[0] == b'\\' && matches!(w[1], b',' | b' ' | b'=' | b'"'));
    match unescape_measurement(raw) {
        Cow::Borrowed(b) => assert!(!escapes && b == raw),
        Cow::Owned(o) => assert!(escapes && o.len() < raw.len()),
    }
}
