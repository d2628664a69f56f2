//! Unit tests of the replayer: grouping, joined bodies, request
//! parameters and which answers are retried.

use bytes::Bytes;

use super::request::{classify, join_bodies, prom_write_path, statement_form, write_path, Sent};
use super::*;
use crate::payload::Payload;

fn write(db: &str, body: &'static str) -> Record {
    Record {
        kind: RecordKind::Write,
        accepted_at_ms: 0,
        db: db.into(),
        rp: String::new(),
        precision: "s".into(),
        gzip: false,
        auth: None,
        body: Payload::from(body),
    }
}

fn at(n: u64) -> Position {
    Position {
        segment: 0,
        offset: n,
    }
}

#[test]
fn consecutive_plain_writes_to_one_place_form_one_group() {
    let statement = Record {
        kind: RecordKind::Statement,
        ..write("a", "CREATE DATABASE a")
    };
    let zipped = Record {
        gzip: true,
        ..write("a", "zz")
    };
    let prom = |body| Record {
        kind: RecordKind::PromWrite,
        precision: String::new(),
        ..write("a", body)
    };
    let batch = vec![
        (at(1), write("a", "m v=1\n")),
        (at(2), write("a", "m v=2")),
        (at(3), write("b", "m v=3\n")),
        (at(4), statement),
        (at(5), zipped),
        (at(6), write("a", "m v=4\n")),
        (at(7), prom("\x00")),
        (at(8), prom("\x00")),
    ];
    let sizes: Vec<usize> = groups(&batch).iter().map(|g| g.len()).collect();
    assert_eq!(sizes, vec![2, 1, 1, 1, 1, 1, 1]);
}

#[test]
fn joined_bodies_never_merge_two_lines() {
    let (a, b) = (write("a", "m v=1"), write("a", "m v=2\n"));
    let joined = join_bodies(&[&a, &b]).to_contiguous();
    assert_eq!(&joined[..], b"m v=1\nm v=2\n");
}

#[test]
fn write_and_statement_requests_carry_their_parameters() {
    let record = Record {
        rp: "week".into(),
        ..write("my db", "")
    };
    assert_eq!(write_path(&record), "/write?db=my+db&rp=week&precision=s");
    let prom = Record {
        kind: RecordKind::PromWrite,
        ..record
    };
    assert_eq!(
        prom_write_path(&prom),
        "/api/v1/prom/write?db=my+db&rp=week"
    );
    let statement = Record {
        kind: RecordKind::Statement,
        ..write("d", "CREATE DATABASE \"x;y\"")
    };
    assert_eq!(
        &statement_form(&statement).to_contiguous()[..],
        b"q=CREATE+DATABASE+%22x%3By%22&db=d"
    );
}

#[test]
fn only_5xx_and_failures_are_retried() {
    assert!(matches!(
        classify(http::StatusCode::NO_CONTENT, &Bytes::new()),
        Sent::Ok
    ));
    assert!(matches!(
        classify(http::StatusCode::BAD_REQUEST, &Bytes::new()),
        Sent::Rejected(_)
    ));
    assert!(matches!(
        classify(http::StatusCode::SERVICE_UNAVAILABLE, &Bytes::new()),
        Sent::Retry(_)
    ));
}
