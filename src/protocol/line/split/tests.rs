//! [`split_payload`] against [`split_by`] on the same bodies cut into
//! chunks everywhere: same bytes per key in the same order, same keys, same
//! `key_of` calls, same errors.

use bytes::Bytes;

use super::*;
use crate::protocol::line::tests::{Rng, PIECES};

/// What a split gave: per key, all its bytes; or the error.
type Split = Result<Vec<(u8, Vec<u8>)>, LineError>;

/// The measurements `key_of` was called with, in order.
type Calls = Vec<Vec<u8>>;

/// Keys that make runs alternate: the first byte of the measurement, or
/// its length's parity.
const KEYS: [fn(&[u8]) -> u8; 2] = [|m| m.first().copied().unwrap_or(0), |m| (m.len() % 2) as u8];

fn contiguous(body: &Bytes, key: fn(&[u8]) -> u8) -> (Split, Calls) {
    let mut calls = Vec::new();
    let split = split_by(body, |m| {
        calls.push(m.to_vec());
        key(m)
    });
    let flat = split.map(|batches| {
        let join = |(k, runs): (u8, Vec<Bytes>)| (k, runs.concat());
        batches.into_iter().map(join).collect()
    });
    (flat, calls)
}

fn chunked(payload: &Payload, key: fn(&[u8]) -> u8) -> (Split, Calls) {
    let mut calls = Vec::new();
    let split = split_payload(payload, |m| {
        calls.push(m.to_vec());
        key(m)
    });
    let flat = split.map(|batches| {
        let join = |(k, p): (u8, Payload)| (k, p.chunks().concat());
        batches.into_iter().map(join).collect()
    });
    (flat, calls)
}

/// `body` cut at `cuts` (in order, each at most `body.len()`).
fn cut(body: &Bytes, cuts: &[usize]) -> Payload {
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for &to in cuts {
        chunks.push(body.slice(from..to));
        from = to;
    }
    chunks.push(body.slice(from..));
    Payload::from_chunks(chunks)
}

/// `body` in chunks of `size` bytes.
fn chunks_of(body: &Bytes, size: usize) -> Payload {
    let cuts: Vec<usize> = (size..body.len()).step_by(size).collect();
    cut(body, &cuts)
}

/// Asserts that every way of splitting `payload` agrees with `expected`.
fn check(body: &Bytes, payload: &Payload, expected: &[(Split, Calls); 2]) {
    for (key, expected) in KEYS.iter().zip(expected) {
        let found = chunked(payload, *key);
        if found != *expected {
            let cuts: Vec<usize> = payload.chunks().iter().map(Bytes::len).collect();
            panic!(
                "body {:?} in chunks of {cuts:?}:\n  chunked    {found:?}\n  contiguous {expected:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

fn expected(body: &Bytes) -> [(Split, Calls); 2] {
    KEYS.map(|key| contiguous(body, key))
}

/// Bodies with every case of the scanner, small enough to cut everywhere.
const SAMPLES: &[&[u8]] = &[
    b"cpu,host=a usage=0.5 1\nmem free=1i 2\ncpu,host=b usage=1 3\ndisk f=1\n",
    b"cpu f=1\r\nmem f=2\r\n\r\ncpu f=3\r\nmem f=4\r\r\n",
    b"# head\n\n  cpu f=1\n\t\n# mid\ncpu f=2\n# tail a=\"b\" c\nmem f=3\n\n# end",
    b"my\\ app\\,x,t\\=k=v\\,w s=\"a\\\"b\" 1\nmy\\ app\\,x f=2\nother\\ m f=3\n",
    b"log msg=\"a\nb\nc\",n=1i 1\nlog msg=\"\\\"\n\" 2\nmem f=1\nlog s=\"x\r\ny\" 3\n",
    b"cpu,t=a\\\nb f=1\nmem f=\\\n2\ncpu f=3\\\n",
    b"cpu f=1\\\\\nmem f=2\\\r\ncpu f=\"\\\\\"\nmem f=4\\",
    b"\0 \tcpu f=1\n   mem f=2\n\0\n cpu f=\"a\nb\"\n",
    b"cpu,h=\xc3\xa9 f=\"\xc3\xbc\"\nm\xc3\xa9m f=1\ncpu f=2",
    b"cpu f=1\nmem\ncpu f=2\n",
    b"cpu f=1\nmem f=2\n,x f=1\n",
    b"cpu f=1\nmem,t=a \ncpu f=2\n",
    b"cpu f=1\n\nmem f=\"open\nstring, never closed\n",
    b"cpu f=1\n# a=\"b\nmem f=2\"\ncpu f=3\n",
    b"cpu f=1\n# a\\\nmem f=2\n",
    b"a b=\"\"\nb c=1\na\\ b=\"x\\\\\",d=\"\n\"\nb c\\\n=1\r\n",
];

#[test]
fn split_payload_equals_split_by_for_every_cut_into_two_and_three_chunks() {
    for sample in SAMPLES {
        let body = Bytes::from_static(sample);
        let expected = expected(&body);
        for i in 0..=body.len() {
            check(&body, &cut(&body, &[i]), &expected);
            for j in i..=body.len() {
                check(&body, &cut(&body, &[i, j]), &expected);
            }
        }
    }
}

#[test]
fn split_payload_equals_split_by_in_chunks_of_every_size() {
    for sample in SAMPLES {
        let body = Bytes::from_static(sample);
        let expected = expected(&body);
        for size in 1..=body.len() {
            check(&body, &chunks_of(&body, size), &expected);
        }
    }
}

/// Random cuts of a body of `len` bytes: a few anywhere, chunks of a
/// random small size, or single bytes.
fn cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    match rng.below(4) {
        0 => {
            let mut cuts: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(len + 1)).collect();
            cuts.sort_unstable();
            cuts
        }
        1 => (1..len).collect(),
        _ => {
            let size = 1 + rng.below(12);
            (size..len).step_by(size).collect()
        }
    }
}

#[test]
fn split_payload_equals_split_by_on_random_bodies_and_cuts() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut body = Vec::new();
        for _ in 0..rng.below(30) {
            body.extend_from_slice(rng.pick(PIECES));
        }
        let body = Bytes::from(body);
        let expected = expected(&body);
        for _ in 0..4 {
            let cuts = cuts(&mut rng, body.len());
            check(&body, &cut(&body, &cuts), &expected);
        }
    }
}

/// A body of `lines` lines like Telegraf's (per-host gathers of cpu, mem,
/// disk and net lines), with an escape-heavy line with a multi-line string
/// every 7th line when `escapes`.
fn batch(lines: usize, escapes: bool) -> Bytes {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut body = String::new();
    for i in 0..lines {
        let host = format!("host=web{:02},dc=eu{}", i / 9 % 40, i / 9 % 3);
        let ts = 1_718_000_000_000_000_000u64 + i as u64;
        let line = match i % 9 {
            _ if escapes && i % 7 == 3 => format!(
                "my\\ app\\,events,{host},k\\=v=a\\=b msg=\"GET /a?b=c, \\\"q\\\"\nsecond line\",\
                 code={}i {ts}",
                200 + rng.below(300)
            ),
            0..=3 => format!(
                "cpu,cpu=cpu{},{host} user={},idle={} {ts}",
                i % 9,
                rng.below(100),
                rng.below(100)
            ),
            4 => format!(
                "mem,{host} used={}i,free={}i {ts}",
                rng.next() >> 32,
                rng.next() >> 32
            ),
            5 | 6 => format!(
                "disk,device=sda{},{host} free={}i,ro=false {ts}",
                i % 9,
                rng.next() >> 28
            ),
            _ => format!(
                "net,interface=eth{},{host} recv={}i,state=\"up\" {ts}",
                i % 2,
                rng.next() >> 32
            ),
        };
        body.push_str(&line);
        body.push('\n');
    }
    Bytes::from(body)
}

#[test]
fn split_payload_equals_split_by_on_large_batches_in_64k_and_random_chunks() {
    let mut rng = Rng(7);
    for escapes in [false, true] {
        let body = batch(5_000, escapes);
        let expected = expected(&body);
        check(&body, &chunks_of(&body, 64 * 1024), &expected);
        check(&body, &Payload::from(body.clone()), &expected);
        for _ in 0..5 {
            let mut cuts: Vec<usize> = (0..40).map(|_| rng.below(body.len())).collect();
            cuts.sort_unstable();
            check(&body, &cut(&body, &cuts), &expected);
        }
        check(&body, &chunks_of(&body, 1 + rng.below(200)), &expected);
    }
}

/// Whether `piece` lies inside one of `chunks` (a slice, not a copy).
fn is_slice_of(piece: &Bytes, chunks: &[Bytes]) -> bool {
    let at = piece.as_ptr() as usize;
    chunks.iter().any(|c| {
        let start = c.as_ptr() as usize;
        start <= at && at + piece.len() <= start + c.len()
    })
}

#[test]
fn split_payload_keeps_long_runs_as_slices_of_the_chunks_even_across_them() {
    let mut text = String::new();
    for i in 0..3_000 {
        text.push_str(&format!("cpu,host=web{i} usage={i} {i}\n"));
    }
    for i in 0..3_000 {
        text.push_str(&format!("mem,host=web{i} used={i}i {i}\n"));
    }
    let body = Bytes::from(text);
    let payload = chunks_of(&body, 64 * 1024);
    let batches = split_payload(&payload, |m| m == b"cpu").unwrap();
    assert_eq!(batches.len(), 2);
    let mut copied = 0;
    for (_, out) in &batches {
        for piece in out.chunks() {
            if !is_slice_of(piece, payload.chunks()) {
                assert!(piece.len() < LONG_RUN, "a long part copied");
                copied += piece.len();
            }
        }
    }
    // Only the short end of a run in a chunk is copied (here at most the
    // last piece of each key): lines across chunks are not.
    assert!(copied < 2 * LONG_RUN, "{copied} bytes copied");
    let joined: Vec<u8> = batches
        .iter()
        .flat_map(|(_, p)| p.chunks().concat())
        .collect();
    assert_eq!(joined, body);
}

#[test]
fn split_payload_copies_alternating_runs_once_into_few_full_buffers() {
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!(
            "cpu,host=web{i} usage={i} {i}\nmem,host=web{i} used={i}i {i}\n"
        ));
    }
    let body = Bytes::from(text);
    let payload = chunks_of(&body, 64 * 1024);
    let batches = split_payload(&payload, |m| m == b"cpu").unwrap();
    let expected = contiguous(&body, |m| u8::from(m == b"cpu")).0.unwrap();
    for ((key, out), (expected_key, expected_bytes)) in batches.iter().zip(&expected) {
        assert_eq!(u8::from(*key), *expected_key);
        assert_eq!(out.chunks().concat(), *expected_bytes);
        let len = out.len() as usize;
        assert!(
            out.chunks().len() <= len.div_ceil(OUT_CHUNK),
            "{} chunks for {len} bytes",
            out.chunks().len()
        );
        assert!(out
            .chunks()
            .iter()
            .all(|c| !is_slice_of(c, payload.chunks())));
    }
}

#[test]
fn split_payload_scans_a_line_over_many_chunks_in_linear_time() {
    // One string of 400 KB holding 100,000 newlines, in 7-byte chunks:
    // rescanning the line from its start at every newline would take
    // minutes; doubling what is read makes it a few rescans.
    let mut text = b"cpu f=1\nlog msg=\"".to_vec();
    for _ in 0..100_000 {
        text.extend_from_slice(b"abc\n");
    }
    text.extend_from_slice(b"\" 1\nmem f=2\n");
    let body = Bytes::from(text);
    let whole = expected(&body);
    check(&body, &chunks_of(&body, 7), &whole);
    check(&body, &chunks_of(&body, 64 * 1024), &whole);
    let mut unterminated = body.to_vec();
    unterminated.truncate(body.len() - 14);
    let body = Bytes::from(unterminated);
    let failed = expected(&body);
    assert_eq!(failed[0].0.as_ref().unwrap_err().line, 2);
    check(&body, &chunks_of(&body, 5), &failed);
}

#[test]
fn split_payload_reports_errors_as_split_by_does_when_chunks_cut_the_line() {
    let body = Bytes::from_static(b"cpu f=1\n\nmem f=\"open\nstring, never closed\n");
    let whole = split_by(&body, |_| 0).unwrap_err();
    assert_eq!(whole.line, 3);
    assert!(whole.message.starts_with("unterminated string"), "{whole}");
    for size in 1..body.len() {
        let error = split_payload(&chunks_of(&body, size), |_| 0).unwrap_err();
        assert_eq!(error, whole);
    }
    let body = Bytes::from_static(b"cpu f=1\nmem\ncpu f=2\n");
    let error = split_payload(&cut(&body, &[10]), |_| 0).unwrap_err();
    assert_eq!(error, split_by(&body, |_| 0).unwrap_err());
    assert_eq!(error.line, 2);
}

#[test]
fn split_payload_calls_key_of_once_per_measurement_even_when_cut() {
    let body = Bytes::from_static(b"cpu f=1\nmy\\ cpu f=1\nmem f=2\nmy\\ cpu f=3\ncpu f=4\n");
    // Cut inside the first "my\ cpu" (read from the scratch buffer), and
    // again inside "mem".
    let payload = cut(&body, &[11, 17]);
    let mut calls = Vec::new();
    let batches = split_payload(&payload, |m| {
        calls.push(String::from_utf8_lossy(m).into_owned());
        m.len()
    })
    .unwrap();
    assert_eq!(calls, ["cpu", "my cpu", "mem"]);
    let keys: Vec<usize> = batches.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, [3, 6]);
    assert_eq!(
        batches[0].1.chunks().concat(),
        b"cpu f=1\nmem f=2\ncpu f=4\n"
    );
    assert_eq!(
        batches[1].1.chunks().concat(),
        b"my\\ cpu f=1\nmy\\ cpu f=3\n"
    );
}

#[test]
fn split_payload_of_nothing_to_forward_is_empty() {
    for body in [&b""[..], b"\n", b"# only\n\n# comments", b"  \r\n\t"] {
        let body = Bytes::from_static(body);
        for size in 1..=body.len().max(1) {
            assert!(split_payload(&chunks_of(&body, size), |_| 0)
                .unwrap()
                .is_empty());
        }
    }
}
