//! Self-monitoring (SPEC §9) in front of two real `influxd` nodes: with
//! `self_database` set the router creates that database on every node,
//! writes its statistics (measurement `router`) every `self_interval`, and
//! writes events (measurement `router_events`) as they happen — all through
//! its own write path, so a node that is down gets them from its queue.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::router::{RouterBuilder, TestRouter};
use support::{wait_until, Influxd};

/// How long an eventual condition may take.
const EVENTUALLY: Duration = Duration::from_secs(30);
const DB: &str = "_router";

#[tokio::test(flavor = "multi_thread")]
async fn statistics_reach_every_node_after_two_intervals() {
    let (a, b) = (Influxd::start(), Influxd::start());
    let router = self_monitored(&a, &b).await;
    // traffic for the statistics to show
    router.query("CREATE DATABASE d", None).await;
    assert_eq!(router.write("db=d", "m v=1i 1\n").await.status, 204);

    tokio::time::sleep(Duration::from_millis(450)).await;
    for node in [&a, &b] {
        let enough = wait_until(EVENTUALLY, || async {
            count(node, "SELECT count(requests) FROM router WHERE node = ''").await >= 2
        })
        .await;
        let all = node.query("SELECT * FROM router", Some(DB)).await;
        assert!(
            enough,
            "fewer than 2 router points on {}: {all}",
            node.url()
        );
        for name in ["a", "b"] {
            let q = format!("SELECT count(queue_records) FROM router WHERE node = '{name}'");
            assert!(
                count(node, &q).await >= 2,
                "no per-node points for {name}: {all}"
            );
        }
    }
    let last = a
        .query("SELECT last(requests), last(write_lines), last(nodes_healthy), last(uptime_seconds) FROM router WHERE node = ''", Some(DB))
        .await;
    let row = last
        .pointer("/results/0/series/0/values/0")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(row[1].as_u64().unwrap_or(0) >= 2, "requests: {last}");
    assert_eq!(row[2], 1, "write_lines: {last}");
    assert_eq!(row[3], 2, "nodes_healthy: {last}");
    assert!(
        row[4].as_f64().unwrap_or(0.0) > 0.0,
        "uptime_seconds: {last}"
    );
    let host = a
        .query("SHOW TAG VALUES FROM router WITH KEY = host", Some(DB))
        .await;
    let expected = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(host.to_string().contains(expected.trim()), "{host}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_node_produces_a_node_down_event_that_it_gets_when_back() {
    let (a, b) = (Influxd::start(), Influxd::start());
    let router = self_monitored(&a, &b).await;
    wait_for_points(&b, "SELECT count(requests) FROM router").await;

    b.stop();
    let down = "SELECT count(message) FROM router_events WHERE event = 'node_down' AND node = 'b'";
    wait_for_points(&a, down).await;
    let events = a.query("SELECT * FROM router_events", Some(DB)).await;
    println!("events on a: {events}");
    assert!(events.to_string().contains("ping failed"), "{events}");

    tokio::task::block_in_place(|| b.start_again());
    let up = "SELECT count(message) FROM router_events WHERE event = 'node_up' AND node = 'b'";
    wait_for_points(&a, up).await;
    // b was down when its own node_down event was written: it gets it from its queue
    wait_for_points(&b, down).await;
    wait_for_points(&b, up).await;
    drop(router);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_self_database_nothing_is_written() {
    let a = Influxd::start();
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .metrics("self_interval", "\"100ms\"")
        .start()
        .await;
    assert_eq!(router.get("/ping").await.status, 204);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let databases = a.databases().await;
    assert!(!databases.contains(&DB.to_string()), "{databases:?}");
}

async fn self_monitored(a: &Influxd, b: &Influxd) -> TestRouter {
    RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .write("consistency", "\"any\"")
        .metrics("self_database", &format!("{DB:?}"))
        .metrics("self_interval", "\"200ms\"")
        .start()
        .await
}

/// The first value of the first row of `q` on `node` in the self database (0 if none).
async fn count(node: &Influxd, q: &str) -> u64 {
    let answer = node.query(q, Some(DB)).await;
    answer
        .pointer("/results/0/series/0/values/0/1")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

async fn wait_for_points(node: &Influxd, q: &str) {
    let found = wait_until(EVENTUALLY, || async { count(node, q).await >= 1 }).await;
    let all = node.query("SELECT * FROM router_events", Some(DB)).await;
    assert!(found, "nothing for {q} on {}: {all}", node.url());
}
