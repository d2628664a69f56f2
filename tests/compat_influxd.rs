//! Edges where the router must answer as InfluxDB 1.6.7 does, checked
//! through the router against real `influxd` nodes: request heads Go's
//! server takes (many headers, 200 KB query strings, up to 1 MiB of
//! header), `consistency` spellings, bodies without lines, and node errors
//! that quote a huge line.

mod support;

use std::net::SocketAddr;

use influxdb_router::config::Config;
use influxdb_router::server::{self, RunningRouter};
use serde_json::Value;
use support::router::RouterBuilder;
use support::Influxd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer read off a raw connection.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends `request` (a whole HTTP/1.1 request that asks to close the
/// connection) and reads the answer to the end: for what `reqwest` cannot
/// send, such as URIs longer than 64 KiB.
async fn raw(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    let status = status.unwrap_or_else(|| panic!("no status line in {head:?}"));
    let chunked = head.to_lowercase().contains("transfer-encoding: chunked");
    Raw {
        status,
        head: head.to_string(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// A router in front of `c1` (the default cluster) and `c2`, which takes
/// the `cpu*` measurements of database `split`: writes to `split` go
/// through the line splitter.
async fn split_router(c1: &Influxd, c2: &Influxd, queues: &tempfile::TempDir) -> RunningRouter {
    let text = format!(
        r#"
[server]
bind = "127.0.0.1:0"
[write]
consistency = "all"
[health]
interval = "100ms"
[buffer]
dir = {dir:?}
[routing]
default_cluster = "c1"
[[cluster]]
name = "c1"
nodes = [{{ name = "n1", url = "{c1}" }}]
[[cluster]]
name = "c2"
nodes = [{{ name = "n2", url = "{c2}" }}]
[[route]]
database = "split"
measurement = "cpu*"
cluster = "c2"
"#,
        dir = queues.path().display().to_string(),
        c1 = c1.url(),
        c2 = c2.url(),
    );
    let config = Config::from_toml_str(&text, "compat.toml").unwrap_or_else(|e| panic!("{e}"));
    server::spawn(config, "test").await.unwrap()
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn error_of(body: &str) -> String {
    let value: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:.300}"));
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body:.300}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_and_pings_with_120_headers_get_204() {
    let node = Influxd::start();
    node.create_database("db").await;
    let router = RouterBuilder::new().node("a", &node.url()).start().await;
    let mut headers = reqwest::header::HeaderMap::new();
    for i in 0..120 {
        let name = reqwest::header::HeaderName::try_from(format!("x-extra-{i}")).unwrap();
        headers.insert(name, format!("value {i}").parse().unwrap());
    }
    let client = reqwest::Client::new();
    let write = client
        .post(format!("{}/write?db=db", router.url()))
        .headers(headers.clone())
        .body("m v=1 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 204, "{}", write.text().await.unwrap());
    let ping = client
        .get(format!("{}/ping", router.url()))
        .headers(headers)
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 204);
    let stored = node.query("SELECT v FROM m", Some("db")).await;
    let values = stored["results"][0]["series"][0]["values"].clone();
    assert_eq!(
        values,
        serde_json::json!([["1970-01-01T00:00:00.000000001Z", 1]])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_query_with_a_200_kb_q_is_answered_by_the_node() {
    let node = Influxd::start();
    node.create_database("db").await;
    node.write("db", "m,host=h1 v=7 1000000000\n").await;
    let router = RouterBuilder::new().node("a", &node.url()).start().await;
    // a long condition that still selects the point (a long OR chain
    // would take influxd itself half a minute)
    let q = format!(
        "SELECT v FROM m WHERE host='h1' AND host != '{}'",
        "x".repeat(200_000)
    );
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", &q)
        .append_pair("db", "db")
        .finish();
    let request =
        format!("GET /query?{query} HTTP/1.1\r\nHost: router\r\nConnection: close\r\n\r\n");
    let answer = raw(router.router.addr(), request.as_bytes()).await;
    assert_eq!(answer.status, 200, "{}\n{:.300}", answer.head, answer.body);
    let values = answer.json()["results"][0]["series"][0]["values"].clone();
    assert_eq!(values, serde_json::json!([["1970-01-01T00:00:01Z", 7]]));
}

#[tokio::test(flavor = "multi_thread")]
async fn large_and_plain_requests_follow_each_other_on_one_connection() {
    let node = Influxd::start();
    node.create_database("db").await;
    let router = RouterBuilder::new().node("a", &node.url()).start().await;
    let extra: String = (0..120).map(|i| format!("X-Extra-{i}: {i}\r\n")).collect();
    let chunked = format!(
        "POST /write?db=db HTTP/1.1\r\nHost: r\r\n{extra}Transfer-Encoding: chunked\r\n\r\n\
         4\r\nm v=\r\n4\r\n1 1\n\r\n0\r\n\r\n"
    );
    let plain = "POST /write?db=db HTTP/1.1\r\nHost: r\r\nContent-Length: 8\r\n\r\nm v=2 2\n";
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("db", "db")
        .append_pair("epoch", "ns")
        .append_pair(
            "q",
            &format!("SELECT v FROM m WHERE host != '{}'", "x".repeat(100_000)),
        )
        .finish();
    let long = format!("GET /query?{query} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n");
    let answer = raw(
        router.router.addr(),
        [chunked.as_str(), plain, &long].concat().as_bytes(),
    )
    .await;
    let text = format!("{}\r\n\r\n{}", answer.head, answer.body);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &text[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["204", "204", "200"], "{text:.2000}");
    assert!(text.contains("\"values\":[[1,1],[2,2]]"), "{text:.2000}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_up_to_1_mib_is_taken_and_a_larger_one_refused_with_431() {
    let router = RouterBuilder::new()
        .node("a", "http://127.0.0.1:9")
        .start()
        .await;
    let head = |pad: usize| {
        format!(
            "GET /ping HTTP/1.1\r\nHost: router\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "p".repeat(pad)
        )
    };
    let taken = raw(router.router.addr(), head(1_000_000).as_bytes()).await;
    assert_eq!(taken.status, 204, "{}", taken.head);
    let refused = raw(router.router.addr(), head(1_100_000).as_bytes()).await;
    assert_eq!(refused.status, 431, "{}", refused.head);
}

#[tokio::test(flavor = "multi_thread")]
async fn consistency_in_capitals_or_empty_is_accepted_like_influxdb() {
    let node = Influxd::start();
    node.create_database("db").await;
    let router = RouterBuilder::new().node("a", &node.url()).start().await;
    for level in ["ALL", "All", "one", "QUORUM", "Any", ""] {
        let answer = router
            .write(&format!("db=db&consistency={level}"), "m v=1\n")
            .await;
        assert_eq!(answer.status, 204, "consistency={level}: {}", answer.body);
        let (status, body) = post(
            &format!(
                "{}/api/v2/write?bucket=db&consistency={level}",
                router.url()
            ),
            "m v=2\n",
        )
        .await;
        assert_eq!(status, 204, "v2 consistency={level}: {body}");
    }
    let refused = router.write("db=db&consistency=most", "m v=1\n").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.error().contains("\"most\""), "{}", refused.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_without_lines_get_204_split_or_not() {
    let (c1, c2) = (Influxd::start(), Influxd::start());
    let queues = tempfile::tempdir().unwrap();
    let router = split_router(&c1, &c2, &queues).await;
    for node in [&c1, &c2] {
        node.create_database("split").await;
        node.create_database("plain").await;
    }
    let url = router.url();
    for db in ["split", "plain"] {
        for body in ["", "\n\n  \n", "# a comment\n  # another\n"] {
            let (status, text) = post(&format!("{url}/write?db={db}"), body).await;
            assert_eq!(status, 204, "db {db}, body {body:?}: {text}");
        }
    }
    // as on InfluxDB, a database that does not exist is still an error
    let (status, text) = post(&format!("{url}/write?db=splitnone"), "# nothing\n").await;
    assert_eq!(status, 404, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_megabyte_line_a_node_rejects_comes_back_as_its_400_truncated() {
    let node = Influxd::start();
    node.create_database("db").await;
    let router = RouterBuilder::new().node("a", &node.url()).start().await;
    let line = format!("c,t={} v=1.5\n", "x".repeat(1_000_000));
    let answer = router.write("db=db", line).await;
    assert_eq!(answer.status, 400, "{:.300}", answer.body);
    let error = answer.error();
    assert!(
        error.starts_with("unable to parse 'c,t=xxxx"),
        "{error:.300}"
    );
    assert!(
        error.ends_with("… (truncated)"),
        "{}",
        &error[error.len() - 100..]
    );
    assert!(answer.body.len() < 100_000, "{} bytes", answer.body.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_split_database_a_line_a_node_rejects_is_named_by_its_line_number() {
    let (c1, c2) = (Influxd::start(), Influxd::start());
    let queues = tempfile::tempdir().unwrap();
    let router = router_for_split(&c1, &c2, &queues).await;
    let url = format!("{}/write?db=split", router.url());
    let huge = format!(
        "mem v=1 1\ncpu v=1 1\n# comment\nmem v=2 2\ncpu,t={} v=1.5 2\ncpu v=3 3\n",
        "x".repeat(1_000_000)
    );
    let (status, body) = post(&url, huge).await;
    assert_eq!(status, 400, "{body:.300}");
    let error = error_of(&body);
    assert!(
        error.contains("unable to parse 'cpu,t=xxxx"),
        "{error:.300}"
    );
    assert!(error.contains("(truncated)"), "{error:.300}");
    assert!(
        error.ends_with("(line 5 of the request body)"),
        "{}",
        &error[error.len() - 100..]
    );
    let small = "mem v=1 1\nmem v=2 2\n\ncpu v=1 1\ncpu v=1x 2\n";
    let (status, body) = post(&url, small).await;
    assert_eq!(status, 400, "{body}");
    let error = error_of(&body);
    assert!(error.contains("unable to parse 'cpu v=1x 2'"), "{error}");
    assert!(error.ends_with("(line 5 of the request body)"), "{error}");
}

async fn router_for_split(c1: &Influxd, c2: &Influxd, queues: &tempfile::TempDir) -> RunningRouter {
    let router = split_router(c1, c2, queues).await;
    for node in [c1, c2] {
        node.create_database("split").await;
    }
    router
}
