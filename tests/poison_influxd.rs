//! Poison input against real `influxd` nodes: a node's answer that carries
//! control bytes in its `X-Influxdb-Error` header, a body in an encoding
//! the router cannot read, and statements with control bytes are answered
//! as InfluxDB answers them, and nothing is queued for nodes that are up.
//! A fake node that answers unreadable HTTP to one record shows that the
//! replayer dead-letters that record after a few attempts and delivers
//! every record behind it.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::router::{RouterBuilder, TestRouter};
use support::{wait_until, Influxd};

const EVENTUALLY: Duration = Duration::from_secs(30);

async fn two_nodes() -> (Influxd, Influxd, TestRouter) {
    let (a, b) = tokio::task::block_in_place(|| (Influxd::start(), Influxd::start()));
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .write("consistency", "\"any\"")
        .start()
        .await;
    for node in [&a, &b] {
        node.create_database("d").await;
    }
    (a, b, router)
}

async fn queued(router: &TestRouter, node: &str) -> u64 {
    let status = router.get("/status").await.json();
    let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
    nodes
        .iter()
        .find(|n| n["name"] == node)
        .and_then(|n| n["queue"]["records"].as_u64())
        .unwrap_or(u64::MAX)
}

async fn count(node: &Influxd) -> u64 {
    let answer = node.query("SELECT count(v) FROM m", Some("d")).await;
    answer
        .pointer("/results/0/series/0/values/0/1")
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

async fn raw_post(
    router: &TestRouter,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let mut request = router
        .client
        .post(format!("{}{path}", router.url()))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("router answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_error_with_control_bytes_is_relayed_and_nothing_is_queued() {
    let (a, b, router) = two_nodes().await;
    let (status, body) = raw_post(&router, "/write?db=d", &[], b"lpcb0\x01\x02".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("missing fields"),
        "the node's own error: {body}"
    );
    assert_eq!(
        (queued(&router, "a").await, queued(&router, "b").await),
        (0, 0)
    );

    let (status, body) = raw_post(&router, "/write?db=d", &[], b"m v=1 1000\n".to_vec()).await;
    assert_eq!(status, 204, "later writes go straight through: {body}");
    assert_eq!((count(&a).await, count(&b).await), (1, 1));
    assert_eq!(
        (queued(&router, "a").await, queued(&router, "b").await),
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn statements_with_control_bytes_get_the_nodes_400_and_queue_nothing() {
    let (_a, _b, router) = two_nodes().await;
    for q in ["DROP \u{1}", "SELECT \u{1}"] {
        let answer = router.query(q, Some("d")).await;
        assert_eq!(answer.status, 400, "{q:?}: {}", answer.body);
        assert!(
            answer.error().contains("error parsing query"),
            "{}",
            answer.body
        );
    }
    assert_eq!(
        (queued(&router, "a").await, queued(&router, "b").await),
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_in_an_unknown_encoding_is_refused_before_any_node_gets_it() {
    let (a, b, router) = two_nodes().await;
    let deflated = {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"m v=1 1000\n").unwrap();
        encoder.finish().unwrap()
    };
    let (status, body) = raw_post(
        &router,
        "/write?db=d",
        &[("content-encoding", "deflate")],
        deflated,
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert!(
        body.contains("unsupported Content-Encoding \\\"deflate\\\""),
        "{body}"
    );
    // gzip, identity and no encoding are fine
    let (status, body) = raw_post(
        &router,
        "/write?db=d",
        &[("content-encoding", "identity")],
        b"m v=2 2000\n".to_vec(),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!((count(&a).await, count(&b).await), (1, 1));
    assert_eq!(
        (queued(&router, "a").await, queued(&router, "b").await),
        (0, 0)
    );
}

/// A node that speaks HTTP well enough for pings and writes, but answers a
/// write whose body holds `poison` with bytes no HTTP client can read.
struct PoisonNode {
    port: u16,
    /// Bodies of the writes it stored (answered 204).
    stored: Arc<std::sync::Mutex<Vec<String>>>,
    poisoned: Arc<AtomicUsize>,
}

impl PoisonNode {
    fn start() -> PoisonNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let stored = Arc::new(std::sync::Mutex::new(Vec::new()));
        let poisoned = Arc::new(AtomicUsize::new(0));
        let (s, p) = (stored.clone(), poisoned.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, p) = (s.clone(), p.clone());
                std::thread::spawn(move || serve(stream, &s, &p));
            }
        });
        PoisonNode {
            port,
            stored,
            poisoned,
        }
    }
}

/// Serves requests on one connection until the client closes it.
fn serve(mut stream: TcpStream, stored: &std::sync::Mutex<Vec<String>>, poisoned: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buffer = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut stream, &mut buffer) else {
            return;
        };
        let answer: Vec<u8> = if head.starts_with("POST /write") {
            let text = String::from_utf8_lossy(&body).into_owned();
            if text.contains("poison") {
                poisoned.fetch_add(1, Ordering::SeqCst);
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: zz\r\n\r\n".to_vec()
            } else {
                stored.lock().unwrap().push(text);
                b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
            }
        } else {
            b"HTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.6.7-poison\r\n\r\n".to_vec()
        };
        if stream.write_all(&answer).is_err() {
            return;
        }
    }
}

/// One request's head and body (by Content-Length), or `None` at the end.
fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 65536];
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    while buffer.len() < end + length {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[end..end + length].to_vec();
    buffer.drain(..end + length);
    Some((head, body))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_record_with_unreadable_answers_is_dead_lettered_and_the_rest_replayed() {
    let node = PoisonNode::start();
    let router = RouterBuilder::new()
        .node("p", &format!("http://127.0.0.1:{}", node.port))
        .write("consistency", "\"any\"")
        .buffer("retry_min", "\"50ms\"")
        .buffer("retry_max", "\"200ms\"")
        .start()
        .await;
    let answer = router.write("db=d", "poison v=1 1\n").await;
    assert_eq!(
        answer.status, 204,
        "queued after an unreadable answer: {}",
        answer.body
    );
    for i in 0..5 {
        let answer = router.write("db=d", format!("m v={i} {i}\n")).await;
        assert_eq!(answer.status, 204, "{}", answer.body);
    }
    let drained = wait_until(EVENTUALLY, || async {
        node.stored.lock().unwrap().len() == 5 && queued(&router, "p").await == 0
    })
    .await;
    let stored = node.stored.lock().unwrap().clone();
    assert!(
        drained,
        "stored {stored:?}, queue {}",
        queued(&router, "p").await
    );
    let expected: Vec<String> = (0..5).map(|i| format!("m v={i} {i}\n")).collect();
    assert_eq!(stored.concat(), expected.concat(), "in order");
    let status = router.get("/status").await.json();
    let dead = status["nodes"][0]["queue"]["dead_letters"].as_u64();
    assert_eq!(dead, Some(1), "{status}");
    // the direct attempt, then per replay round the joined batch and the
    // record alone, for three rounds
    let attempts = node.poisoned.load(Ordering::SeqCst);
    assert!(attempts <= 7, "bounded attempts, got {attempts}");
}
