use std::collections::VecDeque;
use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::framing::{Framer, Step};
use super::*;

/// Reads `chunks` one per `poll_read` (cut to the space offered).
struct Chunks(VecDeque<Vec<u8>>);

impl AsyncRead for Chunks {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let chunks = &mut self.get_mut().0;
        if let Some(mut chunk) = chunks.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                chunks.push_front(chunk.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// What hyper reads of `stream` cut into pieces of `piece` bytes, read
/// `window` bytes at a time; and the connection's stash.
async fn filtered(stream: &[u8], piece: usize, window: usize) -> (Vec<u8>, Arc<Stash>) {
    let chunks = stream.chunks(piece).map(<[u8]>::to_vec).collect();
    let stash = Arc::new(Stash::default());
    let mut reader = Filtered::new(Chunks(chunks), stash.clone());
    let (mut out, mut buf) = (Vec::new(), vec![0; window]);
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            return (out, stash);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn passes(framer: &mut Framer, input: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut steps = Vec::new();
    while at < input.len() {
        match framer.step(&input[at..]) {
            Step::Pass(n) => {
                steps.push(n);
                at += n;
            }
            other => panic!("{other:?} at {at}"),
        }
    }
    steps
}

fn with_headers(count: usize, rest: &str) -> String {
    let mut head = String::from("POST /write?db=x HTTP/1.1\r\n");
    for i in 0..count {
        head.push_str(&format!("X-Extra-{i}: {i}\r\n"));
    }
    head.push_str(rest);
    head
}

#[test]
fn small_heads_pass_whole_and_bodies_are_skipped_by_their_length() {
    let first = "POST /write?db=x HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
    let second = "\r\nGET /ping HTTP/1.1\r\n\r\n";
    let stream = format!("{first}abcde{second}");
    let steps = passes(&mut Framer::default(), stream.as_bytes());
    assert_eq!(steps, vec![first.len(), 5, 2, second.len() - 2]);
}

#[test]
fn a_chunked_body_ends_where_hyper_ends_it() {
    let head = "POST /write HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    let body = "5;ext=1\r\nhello\r\nA \r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
    let next = "GET /ping HTTP/1.1\r\nX-Pad: 1\r\n\r\n";
    let mut framer = Framer::default();
    let stream = format!("{head}{body}{next}");
    let steps = passes(&mut framer, stream.as_bytes());
    assert_eq!(steps, vec![head.len(), body.len(), next.len()]);
}

#[test]
fn a_head_hyper_would_refuse_makes_the_framer_pass_everything() {
    let stream = b"POST /w HTTP/1.1\r\nContent-Length: 5x\r\n\r\nPOST /w HTTP/1.1\r\n";
    let steps = passes(&mut Framer::default(), stream);
    assert_eq!(steps.iter().sum::<usize>(), stream.len());
    assert_eq!(steps.len(), 2, "{steps:?}");
}

#[test]
fn a_head_cut_short_waits_until_its_end_arrives() {
    let head = with_headers(3, "\r\n");
    let mut framer = Framer::default();
    assert!(matches!(framer.step(&head.as_bytes()[..20]), Step::Wait));
    assert!(matches!(
        framer.step(&head.as_bytes()[..head.len() - 1]),
        Step::Wait
    ));
    assert!(matches!(framer.step(head.as_bytes()), Step::Pass(n) if n == head.len()));
}

#[test]
fn a_head_with_too_many_headers_gets_a_stand_in_with_its_framing() {
    let head = with_headers(120, "Content-Length: 3\r\nConnection: close\r\n\r\n");
    let stream = format!("{head}abc");
    let mut framer = Framer::default();
    let Step::Replace {
        len,
        stand_in,
        id,
        stashed,
    } = framer.step(stream.as_bytes())
    else {
        panic!("not replaced");
    };
    assert_eq!((len, id), (head.len(), 1));
    assert_eq!(
        String::from_utf8(stand_in).unwrap(),
        "POST /?influxdb-router-head=1 HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(stashed.headers.len(), 122);
    assert_eq!(stashed.target, "/write?db=x");
    assert!(matches!(framer.step(b"abc"), Step::Pass(3)));
}

#[test]
fn a_head_over_1_mib_passes_for_hyper_to_refuse() {
    let head = format!(
        "GET /ping HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(MAX_HEAD)
    );
    let steps = passes(&mut Framer::default(), head.as_bytes());
    assert_eq!(steps, vec![head.len()]);
}

#[test]
fn a_head_with_more_headers_than_a_header_map_holds_passes_for_hyper_to_refuse() {
    let head = format!("GET /ping HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(40_000));
    let steps = passes(&mut Framer::default(), head.as_bytes());
    assert_eq!(steps, vec![head.len()]);
}

/// Requests of every kind in one stream: small, too many headers, a long
/// query string, chunked, pipelined.
fn mixed_stream() -> (Vec<u8>, Vec<u8>) {
    let small = "POST /write?db=x HTTP/1.1\r\nContent-Length: 4\r\n\r\nm v=";
    let many = with_headers(
        150,
        "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    let long = format!(
        "GET /query?q={} HTTP/1.1\r\nHost: h\r\n\r\n",
        "s".repeat(100_000)
    );
    let ping = "GET /ping HTTP/1.1\r\n\r\n";
    let stream = [small, &many, &long, ping].concat().into_bytes();
    let expected = [
        small,
        "POST /?influxdb-router-head=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "GET /?influxdb-router-head=2 HTTP/1.1\r\n\r\n",
        ping,
    ]
    .concat()
    .into_bytes();
    (stream, expected)
}

#[tokio::test]
async fn hyper_reads_the_same_stand_ins_however_the_stream_is_cut() {
    let (stream, expected) = mixed_stream();
    for (piece, window) in [
        (stream.len(), 64 * 1024),
        (1, 8192),
        (7, 100),
        (4096, 65536),
    ] {
        let (out, stash) = filtered(&stream, piece, window).await;
        assert!(out == expected, "pieces of {piece}, window {window}");
        let long = stash.take(2).expect("the long head is stashed");
        assert_eq!(long.target.len(), "/query?q=".len() + 100_000);
        assert_eq!(stash.take(1).unwrap().headers.len(), 151);
    }
}

#[tokio::test]
async fn a_head_cut_off_by_the_end_of_the_stream_reaches_hyper_as_it_is() {
    let stream = b"GET /ping HTTP/1.1\r\nX-Pad: 1\r\n";
    let (out, _) = filtered(stream, 5, 1000).await;
    assert_eq!(out, stream);
}

fn stand_in_request(id: u64) -> Request<()> {
    let uri = format!("/?{MARKER}={id}");
    Request::builder().uri(uri).body(()).unwrap()
}

#[test]
fn restore_puts_back_the_head_and_a_long_query_string_apart() {
    let stash = Stash::default();
    let mut headers = HeaderMap::new();
    headers.insert("x-one", "1".parse().unwrap());
    let query = format!("q={}&db=x", "s".repeat(70_000));
    stash.put(
        7,
        Stashed {
            method: Method::GET,
            target: format!("/query?{query}"),
            version: Version::HTTP_11,
            headers,
        },
    );
    let request = restore(&stash, stand_in_request(7)).unwrap();
    assert_eq!(request.uri(), "/query");
    assert_eq!(request.headers()["x-one"], "1");
    assert_eq!(
        query_of(request.uri(), request.extensions()),
        Some(query.as_str())
    );
    let unknown = restore(&stash, stand_in_request(7)).unwrap();
    assert_eq!(unknown.uri().path(), "/", "a stand-in is restored once");
}
