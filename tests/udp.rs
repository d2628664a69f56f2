//! UDP line-protocol input in front of two real `influxd` nodes: datagrams
//! of several lines reach both nodes through the ordinary write path, a
//! malformed datagram is counted and dropped without stopping the good
//! ones, a node that is down gets the datagrams from its queue when it
//! returns, and the counters in `/status` add up under a burst.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use serde_json::Value;
use support::router::{RouterBuilder, TestRouter};
use support::{wait_until, Influxd};

/// How long points may take to show up on a node.
const EVENTUALLY: Duration = Duration::from_secs(30);
/// The timestamp of the first point, in nanoseconds.
const BASE_NS: u64 = 1_700_000_000_000_000_000;
/// The database UDP datagrams go to.
const DB: &str = "udp_in";

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn udp_datagrams_reach_both_nodes() {
    let (a, b, router) = two_nodes_with_udp().await;
    let sender = sender();
    const DATAGRAMS: u64 = 20;
    const LINES: u64 = 5;
    for d in 0..DATAGRAMS {
        send(&sender, &router, &points(d * LINES, LINES));
    }
    // blank lines, a comment and no final newline are all fine
    let odd = format!(
        "# from a collector\n\nm,host=web\\ 1 v=100i,s=\"a \\\"quoted\\\" word\" {}\n\nm v=101i {}",
        BASE_NS + 100,
        BASE_NS + 101
    );
    send(&sender, &router, &odd);
    let expected = DATAGRAMS * LINES + 2;
    assert_both_hold(&a, &b, expected).await;
    for node in [&a, &b] {
        let answer = node
            .query("SELECT host, s, v FROM m WHERE v = 100", Some(DB))
            .await;
        let row = answer.pointer("/results/0/series/0/values/0").cloned();
        assert_eq!(
            row.and_then(|r| r.as_array().map(|r| r[1..].to_vec())),
            Some(vec![
                Value::from("web 1"),
                Value::from("a \"quoted\" word"),
                Value::from(100)
            ]),
            "{answer}"
        );
        let exact = node.query("SELECT v FROM m WHERE v = 101", Some(DB)).await;
        assert!(
            exact
                .to_string()
                .contains("\"2023-11-14T22:13:20.000000101Z\""),
            "nanosecond timestamps are kept: {exact}"
        );
    }
    let udp = wait_for_udp(&router, |u| count(u, "written") == DATAGRAMS + 1).await;
    assert_eq!(count(&udp, "received"), DATAGRAMS + 1, "{udp}");
    assert_eq!(count(&udp, "malformed"), 0, "{udp}");
    assert_eq!(count(&udp, "failed"), 0, "{udp}");
    assert_eq!(count(&udp, "dropped"), 0, "{udp}");
    assert_eq!(udp["database"], DB, "{udp}");
    let addr = router.router.udp_addr().expect("udp address");
    assert_eq!(udp["bind"], addr.to_string(), "{udp}");
    assert!(count(&udp, "bytes") > 0, "{udp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_datagram_is_counted_and_dropped_while_good_ones_arrive() {
    let (a, b, router) = two_nodes_with_udp().await;
    let sender = sender();
    send(&sender, &router, &points(0, 3));
    // one bad line drops its whole datagram, good lines included
    let bad = format!(
        "m v=900i {}\nm\nm v=901i {}\n",
        BASE_NS + 900,
        BASE_NS + 901
    );
    send(&sender, &router, &bad);
    send(&sender, &router, "m,host=a");
    send(&sender, &router, &points(3, 3));
    assert_both_hold(&a, &b, 6).await;
    let udp = wait_for_udp(&router, |u| {
        count(u, "malformed") == 2 && count(u, "written") == 2
    })
    .await;
    assert_eq!(count(&udp, "received"), 4, "{udp}");
    for node in [&a, &b] {
        let answer = node.query("SELECT v FROM m WHERE v >= 900", Some(DB)).await;
        assert!(
            answer.pointer("/results/0/series").is_none(),
            "the good lines of a malformed datagram are not written: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_datagrams_never_hold_back_the_good_ones_behind_them() {
    let (a, b, router) = two_nodes_with_udp().await;
    let sender = sender();
    let to: SocketAddr = router.router.udp_addr().expect("udp address");
    let garbage: [&[u8]; 4] = [
        b"lpcb0\x01\x02",
        b"\x00\xff\xfe garbage \x01=\x02",
        b"m\x01 v=\x02\n",
        &[0x8b, 0x1f, 0x00, 0x07, 0x0a],
    ];
    for datagram in garbage {
        sender.send_to(datagram, to).expect("datagram sent");
    }
    send(&sender, &router, &points(0, 3));
    assert_both_hold(&a, &b, 3).await;
    let status = router.get("/status").await.json();
    for node in status["nodes"].as_array().cloned().unwrap_or_default() {
        assert_eq!(node["queue"]["records"], 0, "nothing queued: {node}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_udp_datagram_sent_while_a_node_is_down_reaches_it_when_it_returns() {
    let (a, b, router) = two_nodes_with_udp().await;
    b.stop();
    router.wait_for_health("b", false).await;
    let sender = sender();
    for d in 0..4 {
        send(&sender, &router, &points(d * 10, 10));
    }
    let udp = wait_for_udp(&router, |u| count(u, "written") == 4).await;
    assert_eq!(
        count(&udp, "failed"),
        0,
        "a queued copy counts at consistency any: {udp}"
    );
    let queued = router.get("/status").await.json();
    let b_queue = queued["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == "b"))
        .map(|n| n["queue"].clone())
        .unwrap_or(Value::Null);
    assert!(b_queue["records"].as_u64().unwrap_or(0) >= 1, "{b_queue}");
    assert_eq!(points_on(&a).await, 40);
    tokio::task::block_in_place(|| b.start_again());
    assert_both_hold(&a, &b, 40).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn datagrams_for_a_database_that_does_not_exist_count_as_failed() {
    let (a, b) = two_influxd();
    let router = router_with_udp(&a, &b).await;
    send(&sender(), &router, &points(0, 2));
    let udp = wait_for_udp(&router, |u| count(u, "failed") == 1).await;
    assert_eq!(count(&udp, "written"), 0, "{udp}");
    assert_eq!(count(&udp, "received"), 1, "{udp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_counters_add_up_after_a_burst() {
    let (a, b, router) = two_nodes_with_udp().await;
    let sender = sender();
    const DATAGRAMS: u64 = 2_000;
    const LINES: u64 = 10;
    for d in 0..DATAGRAMS {
        send(&sender, &router, &points(d * LINES, LINES));
        if d % 5 == 4 {
            send(&sender, &router, "no_field_set");
        }
    }
    // the kernel may drop datagrams it cannot buffer; what the router received settles
    let settled = wait_until(EVENTUALLY, || async {
        let udp = udp_status(&router).await;
        let outcomes = ["written", "malformed", "failed", "dropped"]
            .iter()
            .map(|k| count(&udp, k))
            .sum::<u64>();
        outcomes == count(&udp, "received")
    })
    .await;
    let udp = udp_status(&router).await;
    println!(
        "after {DATAGRAMS} good and {} malformed datagrams: {udp}",
        DATAGRAMS / 5
    );
    assert!(settled, "every datagram received has an outcome: {udp}");
    assert_eq!(count(&udp, "failed"), 0, "{udp}");
    assert!(count(&udp, "written") > 0, "{udp}");
    assert!(count(&udp, "malformed") > 0, "{udp}");
    assert_both_hold(&a, &b, count(&udp, "written") * LINES).await;
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// Two real nodes (started side by side) and no router yet.
fn two_influxd() -> (Influxd, Influxd) {
    std::thread::scope(|s| {
        let a = s.spawn(Influxd::start);
        let b = s.spawn(Influxd::start);
        (
            a.join().expect("influxd a starts"),
            b.join().expect("influxd b starts"),
        )
    })
}

/// A router with UDP input on 127.0.0.1:0 into [`DB`] in front of `a` and `b`.
async fn router_with_udp(a: &Influxd, b: &Influxd) -> TestRouter {
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .server("udp_bind", "\"127.0.0.1:0\"")
        .server("udp_database", &format!("\"{DB}\""))
        .start()
        .await;
    assert!(router.router.udp_addr().is_some(), "the router reads UDP");
    router
}

/// Two nodes and a router with UDP input, and [`DB`] created through the router.
async fn two_nodes_with_udp() -> (Influxd, Influxd, TestRouter) {
    let (a, b) = two_influxd();
    let router = router_with_udp(&a, &b).await;
    let answer = router.query(&format!("CREATE DATABASE {DB}"), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    (a, b, router)
}

fn sender() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("a UDP socket on 127.0.0.1")
}

fn send(sender: &UdpSocket, router: &TestRouter, datagram: &str) {
    let to: SocketAddr = router.router.udp_addr().expect("udp address");
    let sent = sender
        .send_to(datagram.as_bytes(), to)
        .expect("datagram sent");
    assert_eq!(sent, datagram.len());
}

/// `count` lines `m v=<i>i` with timestamps `BASE_NS + i` from `first` on.
fn points(first: u64, count: u64) -> String {
    (first..first + count)
        .map(|i| format!("m v={i}i {}\n", BASE_NS + i))
        .collect()
}

async fn points_on(node: &Influxd) -> u64 {
    let answer = node.query("SELECT count(v) FROM m", Some(DB)).await;
    answer
        .pointer("/results/0/series/0/values/0/1")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

async fn assert_both_hold(a: &Influxd, b: &Influxd, n: u64) {
    let arrived = wait_until(EVENTUALLY, || async {
        points_on(a).await == n && points_on(b).await == n
    })
    .await;
    let (on_a, on_b) = (points_on(a).await, points_on(b).await);
    assert!(
        arrived,
        "expected {n} points on each node; a has {on_a}, b has {on_b}"
    );
}

async fn udp_status(router: &TestRouter) -> Value {
    router.get("/status").await.json()["udp"].clone()
}

/// Waits until `/status`'s `udp` object satisfies `done`, and returns it.
async fn wait_for_udp(router: &TestRouter, done: impl Fn(&Value) -> bool) -> Value {
    let ok = wait_until(EVENTUALLY, || async { done(&udp_status(router).await) }).await;
    let udp = udp_status(router).await;
    assert!(ok, "udp counters did not get there: {udp}");
    udp
}

fn count(udp: &Value, key: &str) -> u64 {
    udp[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {key} in {udp}"))
}
