//! `GET /metrics` in front of real `influxd` nodes: after a known workload
//! the exposition shows exactly the counts that workload implies; a stopped
//! node shows up as failures, unhealthy and a queue that fills and then
//! drains back to zero; routing swaps and refusals are counted; each router
//! in a process counts on its own.

mod support;

use std::time::Duration;

use support::router::{RouterBuilder, TestRouter};
use support::{wait_until, Influxd};

/// How long an eventual condition (health change, replay) may take.
const EVENTUALLY: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_known_workload_shows_exact_request_byte_and_line_counts() {
    let (a, b) = (Influxd::start(), Influxd::start());
    for node in [&a, &b] {
        node.create_database("db").await;
    }
    let router = two_node_router(&a, &b).await;

    let mut bytes = 0;
    let mut lines = 0;
    for i in 0..7u64 {
        // i + 1 lines, the last one without its newline on odd requests; the
        // last body is large enough to arrive in many chunks
        let n = if i == 5 { 40_000 } else { i + 1 };
        let mut body: String = (0..n).map(|j| format!("m,w={i} v={j}i {j}\n")).collect();
        if i % 2 == 1 {
            body.pop();
        }
        bytes += body.len() as u64;
        lines += n;
        let answer = router.write("db=db", body).await;
        assert_eq!(answer.status, 204, "write {i}: {}", answer.body);
    }
    let mut query_bytes = 0;
    for q in [
        "SELECT count(v) FROM m",
        "SHOW MEASUREMENTS",
        "SHOW DATABASES",
    ] {
        query_bytes += form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("q", q), ("db", "db")])
            .finish()
            .len() as u64;
        let answer = router.query(q, Some("db")).await;
        assert_eq!(answer.status, 200, "{q}: {}", answer.body);
    }
    for _ in 0..2 {
        assert_eq!(router.get("/ping").await.status, 204);
    }
    assert_eq!(router.write("", "m v=1").await.status, 400, "no db");
    assert_eq!(router.get("/nowhere").await.status, 404);

    let scrape = router.get("/metrics").await;
    assert_eq!(scrape.status, 200);
    let content_type = scrape.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let m = Metrics(scrape.body);
    let requests = "influxdb_router_http_requests_total";
    assert_eq!(
        m.get(requests, &[("endpoint", "write"), ("status", "2xx")]),
        7.0
    );
    assert_eq!(
        m.get(requests, &[("endpoint", "write"), ("status", "4xx")]),
        1.0
    );
    assert_eq!(
        m.get(requests, &[("endpoint", "query"), ("status", "2xx")]),
        3.0
    );
    assert_eq!(
        m.get(requests, &[("endpoint", "ping"), ("status", "2xx")]),
        2.0
    );
    assert_eq!(
        m.get(requests, &[("endpoint", "other"), ("status", "4xx")]),
        1.0
    );
    assert_eq!(m.get(requests, &[("status", "5xx")]), 0.0);
    assert_eq!(
        m.get(requests, &[("endpoint", "metrics")]),
        0.0,
        "a scrape is counted once it is answered"
    );
    let duration_count = "influxdb_router_http_request_duration_seconds_count";
    assert_eq!(m.get(duration_count, &[("endpoint", "write")]), 8.0);
    assert_eq!(m.get(duration_count, &[("endpoint", "query")]), 3.0);
    let received = "influxdb_router_http_received_bytes_total";
    assert_eq!(m.get(received, &[("endpoint", "write")]), bytes as f64);
    assert_eq!(
        m.get(received, &[("endpoint", "query")]),
        query_bytes as f64
    );
    assert_eq!(
        m.get("influxdb_router_write_lines_total", &[]),
        lines as f64
    );
    let sent = "influxdb_router_http_sent_bytes_total";
    assert!(
        m.get(sent, &[("endpoint", "query")]) > 0.0,
        "query answers stream back"
    );

    let node_requests = "influxdb_router_node_requests_total";
    for node in ["a", "b"] {
        let labels = [("cluster", "main"), ("node", node), ("kind", "write")];
        assert_eq!(m.get(node_requests, &labels), 7.0, "writes to {node}");
        let labels = [("node", node)];
        assert_eq!(m.get("influxdb_router_node_failures_total", &labels), 0.0);
        assert_eq!(m.get("influxdb_router_node_healthy", &labels), 1.0);
        assert_eq!(m.get("influxdb_router_queue_records", &labels), 0.0);
        assert!(m.get(node_requests, &[("node", node), ("kind", "health")]) >= 1.0);
    }
    assert_eq!(
        m.get(node_requests, &[("kind", "query")]),
        3.0,
        "one node per read"
    );
    let node_sent = m.get(
        "influxdb_router_node_sent_bytes_total",
        &[("cluster", "main")],
    );
    assert_eq!(
        node_sent,
        (2 * bytes + query_bytes) as f64,
        "writes to both, reads to one"
    );
    assert_eq!(m.get(node_requests, &[("kind", "admin")]), 0.0);
    assert_eq!(m.get("influxdb_router_routing_table_version", &[]), 1.0);
    assert!(m.get("influxdb_router_open_connections", &[]) >= 1.0);
    assert_eq!(
        m.get(
            "influxdb_router_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(m.get("influxdb_router_process_resident_memory_bytes", &[]) > 1e6);
    assert!(m.has("influxdb_router_process_cpu_seconds_total"));
    m.assert_well_formed();

    let again = Metrics(router.get("/metrics").await.body);
    assert_eq!(
        again.get(requests, &[("endpoint", "metrics"), ("status", "2xx")]),
        1.0
    );
    assert!(again.get(sent, &[("endpoint", "metrics")]) > 1000.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_node_fails_and_its_queue_gauges_return_to_zero_after_replay() {
    let (a, b) = (Influxd::start(), Influxd::start());
    for node in [&a, &b] {
        node.create_database("db").await;
    }
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .write("consistency", "\"any\"")
        .start()
        .await;

    b.stop();
    let b_labels = [("cluster", "main"), ("node", "b")];
    let down = wait_for(&router, |m| {
        m.get("influxdb_router_node_healthy", &b_labels) == 0.0
    })
    .await;
    assert!(down.get("influxdb_router_node_failures_total", &b_labels) > 0.0);
    assert_eq!(
        down.get("influxdb_router_node_failures_total", &[("node", "a")]),
        0.0
    );

    const WRITES: u64 = 5;
    for i in 0..WRITES {
        let answer = router.write("db=db", format!("m v={i}i {i}\n")).await;
        assert_eq!(answer.status, 204, "{}", answer.body);
    }
    let held = Metrics(router.get("/metrics").await.body);
    let appended = held.get("influxdb_router_queue_appended_bytes_total", &b_labels);
    println!("b while down: {}", held.lines_of(&[("node", "b")]));
    assert_eq!(
        held.get("influxdb_router_queue_records", &b_labels),
        WRITES as f64
    );
    assert_eq!(
        held.get("influxdb_router_queue_appended_records_total", &b_labels),
        WRITES as f64
    );
    assert!(appended > 0.0);
    assert_eq!(
        held.get("influxdb_router_queue_bytes", &b_labels),
        appended,
        "paired"
    );
    assert!(held.get("influxdb_router_queue_disk_bytes", &b_labels) > appended);
    assert_eq!(
        held.get("influxdb_router_queue_records", &[("node", "a")]),
        0.0
    );

    tokio::task::block_in_place(|| b.start_again());
    let drained = wait_for(&router, |m| {
        m.get("influxdb_router_queue_records", &b_labels) == 0.0
            && m.get("influxdb_router_node_healthy", &b_labels) == 1.0
    })
    .await;
    println!("b after replay: {}", drained.lines_of(&[("node", "b")]));
    assert_eq!(drained.get("influxdb_router_queue_bytes", &b_labels), 0.0);
    assert_eq!(
        drained.get("influxdb_router_queue_replayed_records_total", &b_labels),
        WRITES as f64
    );
    assert_eq!(
        drained.get("influxdb_router_queue_replayed_bytes_total", &b_labels),
        appended
    );
    assert_eq!(
        drained.get("influxdb_router_queue_dead_letters_total", &b_labels),
        0.0
    );
    let replays = [("node", "b"), ("kind", "replay")];
    assert!(drained.get("influxdb_router_node_requests_total", &replays) >= 1.0);
    let answer = b.query("SELECT count(v) FROM m", Some("db")).await;
    assert_eq!(
        answer.pointer("/results/0/series/0/values/0/1"),
        Some(&WRITES.into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_swaps_and_refused_updates_are_counted() {
    let a = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.toml");
    let config = |nodes: &str| {
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n[health]\ninterval = \"100ms\"\n[buffer]\ndir = {:?}\n[[cluster]]\nname = \"main\"\nnodes = [{nodes}]\n",
            dir.path().join("queues").display().to_string()
        )
    };
    let one = format!("{{ name = \"a\", url = \"{}\" }}", a.url());
    std::fs::write(&path, config(&one)).unwrap();
    let router = influxdb_router::server::spawn_watching(&path)
        .await
        .unwrap();
    let url = router.url();
    let scrape = || async {
        Metrics(
            reqwest::get(format!("{url}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
    };

    std::fs::write(&path, config("{ name = \"a\", url = \"not a url\" }")).unwrap();
    let refused = wait_until(EVENTUALLY, || async {
        scrape()
            .await
            .get("influxdb_router_routing_updates_refused_total", &[])
            >= 1.0
    })
    .await;
    assert!(refused, "{}", scrape().await.0);
    let m = scrape().await;
    assert_eq!(m.get("influxdb_router_routing_table_version", &[]), 1.0);
    assert_eq!(m.get("influxdb_router_routing_table_swaps_total", &[]), 0.0);
    assert_eq!(
        m.get(
            "influxdb_router_events_total",
            &[("event", "table_refused")]
        ),
        m.get("influxdb_router_routing_updates_refused_total", &[])
    );

    let two = format!(
        "{one}, {{ name = \"a2\", url = \"{}\", mode = \"write-only\" }}",
        a.url()
    );
    std::fs::write(&path, config(&two)).unwrap();
    let swapped = wait_until(EVENTUALLY, || async {
        scrape()
            .await
            .get("influxdb_router_routing_table_version", &[])
            == 2.0
    })
    .await;
    assert!(swapped, "{}", scrape().await.0);
    let m = scrape().await;
    assert_eq!(m.get("influxdb_router_routing_table_swaps_total", &[]), 1.0);
    assert_eq!(
        m.get(
            "influxdb_router_events_total",
            &[("event", "table_swapped")]
        ),
        1.0
    );
    assert!(m.has_series("influxdb_router_node_healthy", &[("node", "a2")]));
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_routers_in_one_process_count_each_on_their_own() {
    let (a, b) = (Influxd::start(), Influxd::start());
    for node in [&a, &b] {
        node.create_database("db").await;
    }
    let first = two_node_router(&a, &b).await;
    let second = two_node_router(&a, &b).await;
    for i in 0..3 {
        assert_eq!(
            first.write("db=db", format!("m v={i}i {i}")).await.status,
            204
        );
    }
    assert_eq!(second.write("db=db", "m v=9i 9").await.status, 204);
    let requests = "influxdb_router_http_requests_total";
    let writes = [("endpoint", "write"), ("status", "2xx")];
    assert_eq!(
        Metrics(first.get("/metrics").await.body).get(requests, &writes),
        3.0
    );
    assert_eq!(
        Metrics(second.get("/metrics").await.body).get(requests, &writes),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_endpoint_is_not_found_when_prometheus_is_off() {
    let a = Influxd::start();
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .metrics("prometheus", "false")
        .start()
        .await;
    let answer = router.get("/metrics").await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(router.get("/ping").await.status, 204);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn two_node_router(a: &Influxd, b: &Influxd) -> TestRouter {
    RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .start()
        .await
}

/// Scrapes until `cond` holds (panics with the last scrape otherwise).
async fn wait_for(router: &TestRouter, cond: impl Fn(&Metrics) -> bool) -> Metrics {
    let mut last = Metrics(String::new());
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while tokio::time::Instant::now() < deadline {
        last = Metrics(router.get("/metrics").await.body);
        if cond(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "condition not met within {EVENTUALLY:?}; last scrape:\n{}",
        last.0
    );
}

/// A Prometheus text exposition.
struct Metrics(String);

impl Metrics {
    /// Samples as (name, label text, value).
    fn samples(&self) -> impl Iterator<Item = (&str, &str, f64)> {
        self.0
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value: {line}"));
                match series.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}'), value),
                    None => (series, "", value),
                }
            })
    }

    fn matches(labels: &str, wanted: &[(&str, &str)]) -> bool {
        wanted
            .iter()
            .all(|(k, v)| labels.split(',').any(|pair| pair == format!("{k}=\"{v}\"")))
    }

    /// The sum of the series of `name` that carry all `labels` (0 if none).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples()
            .filter(|(n, l, _)| *n == name && Self::matches(l, labels))
            .map(|(_, _, v)| v)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.samples().any(|(n, _, _)| n == name)
    }

    fn has_series(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples()
            .any(|(n, l, _)| n == name && Self::matches(l, labels))
    }

    /// The samples that carry `labels` (histogram buckets left out), for messages.
    fn lines_of(&self, labels: &[(&str, &str)]) -> String {
        let lines: Vec<String> = self
            .samples()
            .filter(|(n, l, _)| !n.ends_with("_bucket") && Self::matches(l, labels))
            .map(|(n, l, v)| format!("{n}{{{l}}} {v}"))
            .collect();
        lines.join("\n")
    }

    /// Every sample is ours, every metric has HELP and TYPE, and no label
    /// carries a client's database or measurement name.
    fn assert_well_formed(&self) {
        for (name, labels, _) in self.samples() {
            assert!(
                name.starts_with("influxdb_router_"),
                "foreign metric {name}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                self.0.contains(&format!("# TYPE {family} ")),
                "no TYPE for {name}"
            );
            assert!(
                !labels.contains("\"db\"") && !labels.contains("\"m\""),
                "{name}{{{labels}}}"
            );
        }
    }
}
