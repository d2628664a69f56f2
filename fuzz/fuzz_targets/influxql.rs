//! Fuzzes the InfluxQL splitter and classifier.
//!
//! Invariants: never panics; every statement is a non-empty, trimmed
//! substring of the input; statements come in input order without
//! overlapping; `classify(text) == kind`; a statement parses back to
//! itself; `split` agrees with `parse`; lexer tokens are in-order,
//! non-overlapping slices of the input.
//!
//! Run from the repository root (new inputs go to the git-ignored corpus,
//! the seeds are only read):
//!
//! ```text
//! cargo +nightly fuzz run influxql fuzz/corpus/influxql fuzz/seeds/influxql -- -max_total_time=120
//! ```

#![no_main]

use influxdb_router::protocol::influxql::{classify, parse, split, tokens};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    check_statements(q);
    check_tokens(q);
});

/// Byte offset of `part` in `whole`, which must contain it.
fn offset_in(whole: &str, part: &str) -> usize {
    let start = (part.as_ptr() as usize)
        .checked_sub(whole.as_ptr() as usize)
        .expect("slice starts before the input");
    assert!(
        start + part.len() <= whole.len(),
        "slice ends after the input"
    );
    start
}

fn check_statements(q: &str) {
    let statements = parse(q);
    let mut previous_end = 0;
    for s in &statements {
        assert!(!s.text.is_empty(), "empty statement in {q:?}");
        assert_eq!(s.text, s.text.trim(), "untrimmed statement in {q:?}");
        let start = offset_in(q, s.text);
        assert!(
            start >= previous_end,
            "statements overlap or are out of order in {q:?}"
        );
        previous_end = start + s.text.len();
        assert_eq!(
            classify(s.text),
            s.kind,
            "classify disagrees on {:?}",
            s.text
        );
        assert_eq!(
            parse(s.text),
            [*s],
            "statement does not parse back to itself"
        );
    }
    let texts: Vec<&str> = statements.iter().map(|s| s.text).collect();
    assert_eq!(split(q), texts, "split disagrees with parse on {q:?}");
}

fn check_tokens(q: &str) {
    let mut previous_end = 0;
    for token in tokens(q) {
        assert!(!token.text.is_empty(), "empty token in {q:?}");
        assert_eq!(offset_in(q, token.text), token.start);
        assert!(token.start >= previous_end, "tokens overlap in {q:?}");
        previous_end = token.end();
    }
}
