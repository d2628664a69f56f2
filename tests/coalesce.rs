//! Merging of small concurrent writes (`[write] coalesce_delay`): fewer node
//! requests, every client answered for its own write, and a bad write never
//! failing another client's.

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use support::router::{RouterBuilder, TestRouter};
use support::{Behaviour, FakeNode, Influxd};

/// `n` writes of one line each to `db`, all at once; their statuses in order.
async fn concurrent_writes(router: &TestRouter, params: &str, bodies: &[String]) -> Vec<u16> {
    let writes = bodies.iter().map(|body| router.write(params, body.clone()));
    join_all(writes).await.iter().map(|a| a.status).collect()
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix} v={i}i {}", i + 1))
        .collect()
}

#[tokio::test]
async fn concurrent_small_writes_reach_each_node_in_few_requests() {
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .write("consistency", "\"all\"")
        .write("coalesce_delay", "\"50ms\"")
        .start()
        .await;
    let bodies = lines("cpu", 40);
    let statuses = concurrent_writes(&router, "db=d&precision=s", &bodies).await;
    assert!(statuses.iter().all(|&s| s == 204), "{statuses:?}");
    for node in [&a, &b] {
        let requests = node.requests_to("/write");
        assert!(
            requests.len() < 10,
            "40 concurrent writes took {} node requests",
            requests.len()
        );
        for request in &requests {
            assert_eq!(request.uri, "/write?db=d&precision=s");
        }
        let mut written = node.written_lines();
        written.sort();
        let mut expected = bodies.clone();
        expected.sort();
        assert_eq!(written, expected);
    }
}

#[tokio::test]
async fn writes_for_different_databases_or_users_are_never_merged() {
    let node = FakeNode::start();
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .write("coalesce_delay", "\"50ms\"")
        .start()
        .await;
    let (one, two, three) = tokio::join!(
        router.write("db=d1", "cpu v=1 1"),
        router.write("db=d2", "cpu v=2 2"),
        router.write("db=d1&u=bob&p=pw", "cpu v=3 3"),
    );
    assert_eq!((one.status, two.status, three.status), (204, 204, 204));
    let mut seen: Vec<(String, String)> = node
        .requests_to("/write")
        .iter()
        .map(|r| (r.uri.clone(), r.body_str()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("/write?db=d1".to_string(), "cpu v=1 1".to_string()),
            (
                "/write?db=d1&u=bob&p=pw".to_string(),
                "cpu v=3 3".to_string()
            ),
            ("/write?db=d2".to_string(), "cpu v=2 2".to_string()),
        ]
    );
}

#[tokio::test]
async fn a_lone_write_goes_at_once_and_a_waiting_one_at_most_the_delay_later() {
    let node = FakeNode::start();
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .write("coalesce_delay", "\"200ms\"")
        .write("coalesce_max_bytes", "\"100B\"")
        .start()
        .await;
    // nothing in flight: no waiting
    let started = Instant::now();
    assert_eq!(router.write("db=d", "cpu v=1 1").await.status, 204);
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    // a write as large as the limit is never held back
    let big = "mem,host=h value=1i 1\n".repeat(6);
    assert!(big.len() >= 100);
    let started = Instant::now();
    assert_eq!(router.write("db=d", big).await.status, 204);
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(node.requests_to("/write").len(), 2);

    // with a request in flight (the node takes 1.5 s), a second write waits
    // in a batch, but for no more than the delay
    node.clear();
    node.set_behaviour(Behaviour::Slow(Duration::from_millis(1500)));
    let first = router.write("db=d", "cpu v=2 2");
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        router.write("db=d", "cpu v=3 3").await
    };
    let watch = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        node.requests_to("/write").len()
    };
    let (first, second, seen_early) = tokio::join!(first, second, watch);
    assert_eq!((first.status, second.status), (204, 204));
    assert_eq!(
        seen_early, 2,
        "the waiting write was sent after the delay, not after the first answer"
    );
}

#[tokio::test]
async fn writes_arriving_while_one_is_in_flight_go_out_together_when_it_is_answered() {
    let node = FakeNode::start();
    node.set_behaviour(Behaviour::Slow(Duration::from_millis(300)));
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .write("coalesce_delay", "\"5s\"")
        .write("timeout", "\"10s\"")
        .start()
        .await;
    let first = router.write("db=d", "cpu v=0 1");
    let rest = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        concurrent_writes(&router, "db=d", &lines("mem", 10)).await
    };
    let started = Instant::now();
    let (first, rest) = tokio::join!(first, rest);
    assert_eq!(first.status, 204);
    assert!(rest.iter().all(|&s| s == 204), "{rest:?}");
    // the batch left when the first answer came, long before the 5 s delay
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let bodies: Vec<usize> = node
        .requests_to("/write")
        .iter()
        .map(|r| r.body_str().lines().count())
        .collect();
    assert_eq!(bodies, [1, 10]);
}

#[tokio::test]
async fn large_writes_are_not_merged_but_sent_side_by_side() {
    let node = FakeNode::start();
    node.set_behaviour(Behaviour::Slow(Duration::from_millis(300)));
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .write("coalesce_delay", "\"5s\"")
        .write("timeout", "\"10s\"")
        .start()
        .await;
    // 400 lines of about 100 bytes: above the 32 KiB merge limit
    let batch = |name: &str| {
        let line = |i: usize| {
            format!("{name},host=server{i:04},region=eu-west-1 user={i}.25,system=0.5,idle=99.5,n={i}i 1764115200000000{i:03}")
        };
        (0..400).map(line).collect::<Vec<_>>().join("\n")
    };
    assert!(batch("cpu").len() > 32 * 1024);
    let first = router.write("db=d", batch("cpu"));
    let rest = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let bodies: Vec<String> = (0..4).map(|i| batch(&format!("m{i}"))).collect();
        concurrent_writes(&router, "db=d", &bodies).await
    };
    let (first, rest) = tokio::join!(first, rest);
    assert_eq!(first.status, 204);
    assert!(rest.iter().all(|&s| s == 204), "{rest:?}");
    let bodies: Vec<usize> = node
        .requests_to("/write")
        .iter()
        .map(|r| r.body_str().lines().count())
        .collect();
    assert_eq!(bodies, [400; 5], "one node request per write");
}

#[tokio::test]
async fn a_failing_node_gets_each_write_queued_on_its_own_and_replayed() {
    let (a, b) = (FakeNode::start(), FakeNode::start());
    b.set_behaviour(Behaviour::Status(500, "{\"error\":\"engine down\"}"));
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .write("consistency", "\"any\"")
        .write("coalesce_delay", "\"30ms\"")
        .buffer("retry_min", "\"50ms\"")
        .buffer("retry_max", "\"100ms\"")
        .start()
        .await;
    let bodies = lines("mem", 20);
    let first = router.write("db=d", bodies[0].clone()).await;
    assert_eq!(first.status, 204, "{}", first.body);
    let statuses = concurrent_writes(&router, "db=d", &bodies[1..]).await;
    assert!(statuses.iter().all(|&s| s == 204), "{statuses:?}");
    b.clear();
    b.set_behaviour(Behaviour::Ok);
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.written_lines().len() < bodies.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut replayed = b.written_lines();
    replayed.sort();
    let mut expected = bodies.clone();
    expected.sort();
    assert_eq!(replayed, expected, "each write replayed exactly once");
}

#[tokio::test]
async fn one_bad_write_in_a_merged_batch_fails_only_its_own_client() {
    let node = Influxd::start();
    node.create_database("d").await;
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .write("consistency", "\"all\"")
        .write("coalesce_delay", "\"100ms\"")
        .start()
        .await;
    let mut bodies = lines("cpu", 12);
    bodies[5] = "cpu v=not-a-number 6".to_string();
    let statuses = concurrent_writes(&router, "db=d&precision=s", &bodies).await;
    for (i, status) in statuses.iter().enumerate() {
        let expected = if i == 5 { 400 } else { 204 };
        assert_eq!(*status, expected, "write {i}: {statuses:?}");
    }
    let answer = node.query("SELECT count(v) FROM cpu", Some("d")).await;
    assert_eq!(
        answer["results"][0]["series"][0]["values"][0][1], 11,
        "{answer}"
    );
}
