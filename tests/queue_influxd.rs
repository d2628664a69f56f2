//! The durable per-node write queue (hinted handoff) in front of two real
//! `influxd` nodes: a node that is down, comes back, flaps, or rejects a
//! replayed write ends up with exactly what the router acknowledged, and a
//! router killed with SIGKILL loses nothing it answered 204.
//!
//! Every point carries an explicit nanosecond timestamp, so a write replayed
//! twice changes nothing and counts are exact.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use influxdb_router::config::Config;
use influxdb_router::server;
use influxdb_router::server::RunningRouter;
use serde_json::Value;
use support::router::RouterBuilder;
use support::router_process::{RouterProcess, BIND};
use support::{wait_until, Influxd};
use tempfile::TempDir;

/// How long an eventual condition (a replay) may take.
const EVENTUALLY: Duration = Duration::from_secs(30);
/// The timestamp of the first point, in nanoseconds.
const BASE_NS: u64 = 1_700_000_000_000_000_000;
/// Points in one request of the load writers.
const POINTS_PER_REQUEST: u64 = 5;

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn writes_while_a_node_is_down_reach_it_when_it_returns() {
    let (a, b) = two_influxd();
    let buffer = buffer_dir();
    let router = start_router(&a, &b, buffer.path()).await;
    create_database(&router.url(), "db").await;

    b.stop();
    wait_for_health(&router.url(), "b", false).await;
    const N: u64 = 500;
    for request in 0..50 {
        let status = write(&router.url(), "db=db", points(request * 10, 10)).await;
        assert_eq!(status, Ok(204), "write {request}");
    }
    let held = queue_of(&router.url(), "b").await;
    println!("b's queue while b is down: {held}");
    assert!(number(&held, "records").unwrap_or(0) >= 1, "{held}");
    assert!(number(&held, "bytes").unwrap_or(0) > 0, "{held}");

    tokio::task::block_in_place(|| b.start_again());
    assert_both_hold(&a, &b, "db", N, "").await;
    wait_for_empty_queue(&router.url(), "b").await;
    let queue = queue_of(&router.url(), "b").await;
    assert_eq!(number(&queue, "dead_letters"), Some(0), "{queue}");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_database_while_a_node_is_down_reaches_it_before_the_writes() {
    let (a, b) = two_influxd();
    let buffer = buffer_dir();
    let router = start_router(&a, &b, buffer.path()).await;

    b.stop();
    wait_for_health(&router.url(), "b", false).await;
    let (status, body) = query(&router.url(), "CREATE DATABASE d2").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("\"error\""), "{body}");
    assert!(a.databases().await.contains(&"d2".to_string()));
    const N: u64 = 20;
    let status = write(&router.url(), "db=d2", points(0, N)).await;
    assert_eq!(status, Ok(204));

    tokio::task::block_in_place(|| b.start_again());
    assert_both_hold(&a, &b, "d2", N, "").await;
    assert!(b.databases().await.contains(&"d2".to_string()));
    wait_for_empty_queue(&router.url(), "b").await;
    let queue = queue_of(&router.url(), "b").await;
    assert_eq!(number(&queue, "dead_letters"), Some(0), "{queue}");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_acknowledged_before_kill_9_survive_a_router_restart() {
    let (a, b) = two_influxd();
    let buffer = buffer_dir();
    let mut router = RouterProcess::start(&process_config(&a, &b, buffer.path()));
    let url = router.url();
    create_database(&url, "db").await;

    b.stop();
    wait_for_health(&url, "b", false).await;
    const N: u64 = 500;
    let mut acknowledged = 0;
    for request in 0..50 {
        let status = write(&url, "db=db", points(request * 10, 10)).await;
        assert_eq!(status, Ok(204), "write {request}");
        acknowledged += 10;
    }
    println!("b's queue before kill -9: {}", queue_of(&url, "b").await);

    tokio::task::block_in_place(|| {
        router.kill9();
        router.start_again();
    });
    assert_eq!(router.url(), url, "the restarted router moved");
    tokio::task::block_in_place(|| b.start_again());
    println!("acknowledged {acknowledged} points before kill -9");
    assert_both_hold(&a, &b, "db", N, &router.stderr_text()).await;
    wait_for_empty_queue(&url, "b").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_in_flight_at_kill_9_are_on_the_node_if_they_got_204() {
    let (a, b) = two_influxd();
    let buffer = buffer_dir();
    let mut router = RouterProcess::start(&process_config(&a, &b, buffer.path()));
    let url = router.url();
    create_database(&url, "db").await;
    b.stop();
    wait_for_health(&url, "b", false).await;

    let load = Load::start(&url, 4, Duration::ZERO, true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| router.kill9());
    let logs = load.finish().await;
    let acked = acknowledged_points(&logs);
    let attempted: usize = logs.iter().map(|l| l.acked.len() + l.failed.len()).sum();
    println!(
        "at kill -9: {attempted} requests, {} answered 204 ({} points), {} failed",
        logs.iter().map(|l| l.acked.len()).sum::<usize>(),
        acked.len(),
        logs.iter().map(|l| l.failed.len()).sum::<usize>()
    );
    assert!(
        !acked.is_empty(),
        "no write was acknowledged before the kill"
    );

    tokio::task::block_in_place(|| router.start_again());
    tokio::task::block_in_place(|| b.start_again());
    let complete = wait_until(EVENTUALLY, || async {
        // Counting is cheap; compare timestamps only once enough are there.
        count(&b, "db", "v").await >= acked.len() as u64
            && count(&a, "db", "v").await >= acked.len() as u64
            && missing(&timestamps(&b, "db").await, &acked) == 0
            && missing(&timestamps(&a, "db").await, &acked) == 0
    })
    .await;
    let (on_a, on_b) = (timestamps(&a, "db").await, timestamps(&b, "db").await);
    println!(
        "acknowledged {} points; on a {} ({} acknowledged missing), on b {} ({} acknowledged missing)",
        acked.len(),
        on_a.len(),
        missing(&on_a, &acked),
        on_b.len(),
        missing(&on_b, &acked)
    );
    assert!(
        complete,
        "acknowledged points are missing\n{}",
        router.stderr_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flapping_node_ends_with_exactly_the_same_points() {
    let (a, b) = two_influxd();
    let buffer = buffer_dir();
    let router = start_router(&a, &b, buffer.path()).await;
    create_database(&router.url(), "db").await;

    let load = Load::start(&router.url(), 3, Duration::from_millis(20), false);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        tokio::task::block_in_place(|| b.stop());
        tokio::time::sleep(Duration::from_millis(1000)).await;
        tokio::task::block_in_place(|| b.start_again());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = load.finish().await;
    let failed: Vec<&(u64, String)> = logs.iter().flat_map(|l| &l.failed).collect();
    let acked = acknowledged_points(&logs);
    println!(
        "{} points acknowledged, {} requests failed (first: {:?})",
        acked.len(),
        failed.len(),
        failed.first()
    );
    assert!(
        failed.is_empty(),
        "writes failed while b flapped: {:?}",
        &failed[..failed.len().min(5)]
    );

    wait_for_empty_queue(&router.url(), "b").await;
    let settled = wait_until(EVENTUALLY, || async {
        count(&b, "db", "v").await == acked.len() as u64
    })
    .await;
    let (on_a, on_b) = (count(&a, "db", "v").await, count(&b, "db", "v").await);
    println!("after the flapping: a has {on_a} points, b has {on_b}");
    assert!(settled, "b has {on_b} points, {} acknowledged", acked.len());
    assert_eq!(on_a, acked.len() as u64);
    let q = "SELECT * FROM m ORDER BY time";
    let (rows_a, rows_b) = (rows(&a, q, "db").await, rows(&b, q, "db").await);
    assert_eq!(rows_a.len(), acked.len());
    assert!(
        rows_a == rows_b,
        "a and b differ (first difference at row {:?})",
        first_difference(&rows_a, &rows_b)
    );
    let queue = queue_of(&router.url(), "b").await;
    assert_eq!(number(&queue, "dead_letters"), Some(0), "{queue}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_write_the_node_rejects_goes_to_the_dead_letter_file() {
    let (a, b) = two_influxd();
    let buffer = buffer_dir();
    let router = start_router(&a, &b, buffer.path()).await;
    create_database(&router.url(), "d").await;
    // Only b knows `v` as a float: the integer `v` queued for it below is a
    // field type conflict there, answered 400, while a accepts it.
    b.write("d", &format!("m v=1.5 {BASE_NS}")).await;

    b.stop();
    wait_for_health(&router.url(), "b", false).await;
    let rejected_later = format!("m v=2i {}", BASE_NS + 1);
    assert_eq!(write(&router.url(), "db=d", rejected_later).await, Ok(204));
    let behind_it = format!("m w=3i {}", BASE_NS + 2);
    assert_eq!(write(&router.url(), "db=d", behind_it).await, Ok(204));
    println!(
        "b's queue while b is down: {}",
        queue_of(&router.url(), "b").await
    );

    tokio::task::block_in_place(|| b.start_again());
    let dead_lettered = wait_until(EVENTUALLY, || async {
        let queue = queue_of(&router.url(), "b").await;
        number(&queue, "dead_letters") == Some(1) && number(&queue, "records") == Some(0)
    })
    .await;
    let queue = queue_of(&router.url(), "b").await;
    println!("b's queue after the replay: {queue}");
    println!(
        "files under the buffer dir: {:#?}",
        files_under(buffer.path())
    );
    assert!(dead_lettered, "{queue}");
    let delivered = wait_until(EVENTUALLY, || async { count(&b, "d", "w").await == 1 }).await;
    assert!(
        delivered,
        "the write behind the rejected one did not reach b"
    );
    assert_eq!(count(&b, "d", "v").await, 1, "b keeps only its own float v");
    assert_eq!(
        (count(&a, "d", "v").await, count(&a, "d", "w").await),
        (1, 1)
    );
    assert!(
        buffer.path().join("main").join("b").is_dir(),
        "no queue directory <dir>/main/b: {:#?}",
        files_under(buffer.path())
    );

    // Not retried: after several retry_max periods it is still one dead
    // letter and nothing is pending.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let queue = queue_of(&router.url(), "b").await;
    assert_eq!(number(&queue, "dead_letters"), Some(1), "{queue}");
    assert_eq!(number(&queue, "records"), Some(0), "{queue}");

    // A later good write goes straight through.
    let later = format!("m w=4i {}", BASE_NS + 3);
    assert_eq!(write(&router.url(), "db=d", later).await, Ok(204));
    let delivered = wait_until(EVENTUALLY, || async { count(&b, "d", "w").await == 2 }).await;
    assert!(
        delivered,
        "a later write did not reach b: {}",
        queue_of(&router.url(), "b").await
    );
}

// ---------------------------------------------------------------------------
// Nodes and routers
// ---------------------------------------------------------------------------

/// Two fresh `influxd`s, started side by side.
fn two_influxd() -> (Influxd, Influxd) {
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let a = s.spawn(Influxd::start);
            let b = s.spawn(Influxd::start);
            (a.join().expect("influxd a"), b.join().expect("influxd b"))
        })
    })
}

fn buffer_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("router-buffer-")
        .tempdir()
        .expect("cannot create the buffer directory")
}

/// The `[buffer]` section used by every test: small retry delays so that a
/// replay starts soon after a node returns.
fn buffer_section(dir: &Path) -> String {
    format!(
        "[buffer]\ndir = {}\nmax_size_per_node = \"256MiB\"\non_full = \"reject\"\nfsync = \"batch\"\nretry_min = \"100ms\"\nretry_max = \"1s\"\n",
        toml_string(&dir.to_string_lossy())
    )
}

/// An in-process router in front of `a` and `b` (cluster `main`) with
/// consistency `any` and its queues under `buffer`. Only the configuration
/// text comes from [`RouterBuilder`]; its own `[buffer]` section, if it has
/// one, is replaced.
async fn start_router(a: &Influxd, b: &Influxd, buffer: &Path) -> RunningRouter {
    let builder = RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .write("consistency", "\"any\"");
    let text = format!(
        "{}\n{}",
        without_section(&builder.toml(), "[buffer]"),
        buffer_section(buffer)
    );
    let config = Config::from_toml_str(&text, "test.toml")
        .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    server::spawn(config, "test")
        .await
        .expect("router starts on 127.0.0.1:0")
}

/// The configuration of a router child process in front of `a` and `b`.
fn process_config(a: &Influxd, b: &Influxd, buffer: &Path) -> String {
    format!(
        r#"[server]
bind = "{BIND}"

[write]
consistency = "any"

[health]
interval = "100ms"
timeout = "500ms"
unhealthy_after = 1
healthy_after = 1

{buffer}
[[cluster]]
name = "main"
nodes = [
  {{ name = "a", url = "{a}" }},
  {{ name = "b", url = "{b}" }},
]
"#,
        buffer = buffer_section(buffer),
        a = a.url(),
        b = b.url(),
    )
}

/// `text` without the TOML table `header` (up to the next table header).
fn without_section(text: &str, header: &str) -> String {
    let mut skipping = false;
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            skipping = trimmed == header;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

// ---------------------------------------------------------------------------
// Talking to a router by URL (in-process or child process)
// ---------------------------------------------------------------------------

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("HTTP client")
}

/// `POST /query` with `q` in a form body: status and body text.
async fn query(url: &str, q: &str) -> (u16, String) {
    let response = client()
        .post(format!("{url}/query"))
        .form(&[("q", q)])
        .send()
        .await
        .expect("router answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// `CREATE DATABASE name` through the router, asserting a clean 200.
async fn create_database(url: &str, name: &str) {
    let (status, body) = query(url, &format!("CREATE DATABASE {name}")).await;
    assert_eq!(status, 200, "CREATE DATABASE {name}: {body}");
    assert!(
        !body.contains("\"error\""),
        "CREATE DATABASE {name}: {body}"
    );
}

/// `POST /write?params` through the router: the status, or the transport
/// error as text.
async fn write(url: &str, params: &str, body: String) -> Result<u16, String> {
    write_with(&client(), url, params, body).await
}

async fn write_with(
    client: &reqwest::Client,
    url: &str,
    params: &str,
    body: String,
) -> Result<u16, String> {
    let response = client
        .post(format!("{url}/write?{params}"))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| format!("{e:?}"))?;
    if status == 204 {
        Ok(status)
    } else {
        Err(format!("{status}: {text}"))
    }
}

/// The router's `/status`, or `Null` if it does not answer.
async fn status(url: &str) -> Value {
    let response = client().get(format!("{url}/status")).send().await;
    match response {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// `nodes[name == node]` of `/status`, or `Null`.
async fn node_status(url: &str, node: &str) -> Value {
    status(url).await["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == node).cloned())
        .unwrap_or(Value::Null)
}

/// The `queue` object of `node` in `/status`, or `Null`.
async fn queue_of(url: &str, node: &str) -> Value {
    node_status(url, node).await["queue"].clone()
}

fn number(queue: &Value, key: &str) -> Option<u64> {
    queue.get(key)?.as_u64()
}

async fn wait_for_health(url: &str, node: &str, healthy: bool) {
    let want = if healthy { "healthy" } else { "unhealthy" };
    let ok = wait_until(Duration::from_secs(10), || async {
        node_status(url, node).await["health"] == want
    })
    .await;
    assert!(ok, "node {node} did not become {want}");
}

/// Waits until `/status` shows no pending record for `node`.
async fn wait_for_empty_queue(url: &str, node: &str) {
    let empty = wait_until(EVENTUALLY, || async {
        number(&queue_of(url, node).await, "records") == Some(0)
    })
    .await;
    assert!(
        empty,
        "{node}'s queue did not empty: {}",
        queue_of(url, node).await
    );
}

// ---------------------------------------------------------------------------
// Points
// ---------------------------------------------------------------------------

/// `count` points `m v=<i>i` with timestamps `BASE_NS + i` from `first` on.
fn points(first: u64, count: u64) -> String {
    (first..first + count)
        .map(|i| format!("m v={i}i {}\n", BASE_NS + i))
        .collect()
}

/// The timestamp of point `j` of request `seq` of load writer `writer`.
fn load_point_ns(writer: u64, seq: u64, j: u64) -> u64 {
    BASE_NS + (writer * 1_000_000 + seq) * POINTS_PER_REQUEST + j
}

fn load_request(writer: u64, seq: u64) -> String {
    (0..POINTS_PER_REQUEST)
        .map(|j| format!("m,w=w{writer} v={seq}i {}\n", load_point_ns(writer, seq, j)))
        .collect()
}

/// `SELECT count(field) FROM m` on a node (0 if there is nothing).
/// Waits until `b` holds `n` points of `m` in `db`, then asserts that `a`
/// and `b` hold exactly `n`; `context` is added to a failure message.
async fn assert_both_hold(a: &Influxd, b: &Influxd, db: &str, n: u64, context: &str) {
    let arrived = wait_until(EVENTUALLY, || async { count(b, db, "v").await == n }).await;
    let (on_a, on_b) = (count(a, db, "v").await, count(b, db, "v").await);
    println!("acknowledged {n}, found on a {on_a}, on b {on_b}");
    assert!(arrived, "b has {on_b} of {n} points\n{context}");
    assert_eq!(on_a, n);
}

async fn count(node: &Influxd, db: &str, field: &str) -> u64 {
    let answer = node
        .query(&format!("SELECT count({field}) FROM m"), Some(db))
        .await;
    answer
        .pointer("/results/0/series/0/values/0/1")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Every row of `q` on a node, timestamps in ns, read in chunks so that no
/// row limit applies.
async fn rows(node: &Influxd, q: &str, db: &str) -> Vec<Value> {
    let response = client()
        .get(format!("{}/query", node.url()))
        .query(&[
            ("q", q),
            ("db", db),
            ("epoch", "ns"),
            ("chunked", "true"),
            ("chunk_size", "10000"),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{q} on {}: {e}", node.url()));
    let body = response.bytes().await.expect("query body");
    let mut rows = Vec::new();
    for chunk in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
        let chunk = chunk.unwrap_or_else(|e| panic!("{q}: not JSON ({e})"));
        let series = chunk.pointer("/results/0/series").and_then(Value::as_array);
        for s in series.into_iter().flatten() {
            rows.extend(s["values"].as_array().into_iter().flatten().cloned());
        }
    }
    rows
}

/// The timestamps of all points of `m` on a node.
async fn timestamps(node: &Influxd, db: &str) -> BTreeSet<u64> {
    rows(node, "SELECT v FROM m", db)
        .await
        .iter()
        .filter_map(|row| row.get(0)?.as_u64())
        .collect()
}

fn missing(found: &BTreeSet<u64>, wanted: &BTreeSet<u64>) -> usize {
    wanted.difference(found).count()
}

fn first_difference(a: &[Value], b: &[Value]) -> Option<(usize, Option<Value>, Option<Value>)> {
    let len = a.len().max(b.len());
    (0..len)
        .find(|&i| a.get(i) != b.get(i))
        .map(|i| (i, a.get(i).cloned(), b.get(i).cloned()))
}

fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                files.push((path, size));
            }
        }
    }
    files.sort();
    files
}

// ---------------------------------------------------------------------------
// Write load
// ---------------------------------------------------------------------------

/// What one load writer sent: the sequence numbers answered 204 and the
/// ones that were not (with why).
#[derive(Debug, Default)]
struct WriterLog {
    writer: u64,
    acked: Vec<u64>,
    failed: Vec<(u64, String)>,
}

/// Writer tasks sending numbered requests of unique points to `db`.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<WriterLog>>,
    started: Instant,
}

impl Load {
    /// `writers` tasks writing one request after another (`pause` between
    /// two), until [`finish`](Self::finish) or, with `stop_on_error`, their
    /// first failed request.
    fn start(url: &str, writers: u64, pause: Duration, stop_on_error: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..writers)
            .map(|writer| {
                let (url, stop) = (url.to_owned(), stop.clone());
                tokio::spawn(async move {
                    let client = client();
                    let mut log = WriterLog {
                        writer,
                        ..WriterLog::default()
                    };
                    let mut seq = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let body = load_request(writer, seq);
                        match write_with(&client, &url, "db=db", body).await {
                            Ok(_) => log.acked.push(seq),
                            Err(why) => {
                                log.failed.push((seq, why));
                                if stop_on_error {
                                    break;
                                }
                            }
                        }
                        seq += 1;
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    log
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            started: Instant::now(),
        }
    }

    /// Stops the writers and returns what each sent.
    async fn finish(self) -> Vec<WriterLog> {
        self.stop.store(true, Ordering::SeqCst);
        let mut logs = Vec::new();
        for task in self.tasks {
            logs.push(task.await.expect("writer task"));
        }
        println!(
            "load of {} writers ran {:?}",
            logs.len(),
            self.started.elapsed()
        );
        logs
    }
}

/// The timestamps of every point of every request answered 204.
fn acknowledged_points(logs: &[WriterLog]) -> BTreeSet<u64> {
    logs.iter()
        .flat_map(|log| {
            log.acked.iter().flat_map(move |&seq| {
                (0..POINTS_PER_REQUEST).map(move |j| load_point_ns(log.writer, seq, j))
            })
        })
        .collect()
}
