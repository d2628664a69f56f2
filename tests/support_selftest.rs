//! Tests of the integration-test harness itself (`tests/support`): real
//! `influxd` instances are isolated from each other and survive a restart,
//! and the fake node answers as each behaviour promises.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{free_port, wait_until, Behaviour, FakeNode, Influxd};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn count_of_cpu_points(answer: &serde_json::Value) -> Option<u64> {
    answer.pointer("/results/0/series/0/values/0/1")?.as_u64()
}

// ---------------------------------------------------------------- influxd ---

#[tokio::test]
async fn two_influxd_instances_start_concurrently_on_different_ports_and_share_no_data() {
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(Influxd::start);
        let b = scope.spawn(Influxd::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.port(), b.port());
    assert_ne!(a.rpc_port(), b.rpc_port());
    assert_ne!(a.dir(), b.dir());
    assert_eq!(a.url(), format!("http://127.0.0.1:{}", a.port()));

    a.create_database("only_on_a").await;
    a.write(
        "only_on_a",
        "cpu,host=a value=1 1000000000\ncpu,host=a value=2 2000000000",
    )
    .await;

    let on_a = a
        .query("SELECT count(value) FROM cpu", Some("only_on_a"))
        .await;
    assert_eq!(count_of_cpu_points(&on_a), Some(2), "{on_a}");
    assert!(a.databases().await.contains(&"only_on_a".to_owned()));

    assert!(!b.databases().await.contains(&"only_on_a".to_owned()));
    let on_b = b
        .query("SELECT count(value) FROM cpu", Some("only_on_a"))
        .await;
    let error = on_b.pointer("/results/0/error").and_then(|e| e.as_str());
    assert_eq!(error, Some("database not found: only_on_a"), "{on_b}");
}

#[tokio::test]
async fn stop_makes_influxd_unreachable_and_start_again_brings_it_back_with_its_data() {
    let node = Influxd::start();
    let port = node.port();
    node.create_database("kept").await;
    node.write("kept", "cpu value=42 1000000000").await;
    assert!(node.is_running());

    node.stop();
    assert!(!node.is_running());
    assert!(
        reqwest::get(format!("{}/ping", node.url())).await.is_err(),
        "a stopped influxd still answers /ping"
    );
    node.stop(); // stopping twice is harmless

    node.start_again();
    assert!(node.is_running());
    assert_eq!(node.port(), port);
    let answer = node.query("SELECT value FROM cpu", Some("kept")).await;
    assert_eq!(
        answer.pointer("/results/0/series/0/values/0/1"),
        Some(&serde_json::json!(42)),
        "{answer}"
    );
}

#[tokio::test]
async fn dropping_influxd_kills_its_process_and_removes_its_directory() {
    let node = Influxd::start();
    let pid = node.pid().expect("a running influxd has a pid");
    let dir = node.dir().to_owned();
    assert!(process_exists(pid));
    drop(node);
    assert!(!process_exists(pid), "influxd {pid} survived the drop");
    assert!(!dir.exists());
}

#[tokio::test]
async fn influxd_answers_ping_with_its_real_version() {
    let node = Influxd::start();
    let response = client()
        .get(format!("{}/ping", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let version = response.headers()["x-influxdb-version"].to_str().unwrap();
    assert!(version.starts_with("1."), "{version}");
    assert!(!version.contains("fake"));
}

// -------------------------------------------------------------- fake node ---

#[tokio::test]
async fn a_fake_node_answers_ping_write_and_query_like_a_healthy_influxdb() {
    let node = FakeNode::start();
    let http = client();

    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let ping = http
            .request(method, format!("{}/ping", node.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(ping.status(), 204);
        assert_eq!(ping.headers()["x-influxdb-version"], "1.6.7-fake");
    }

    let write = http
        .post(format!("{}/write?db=telegraf&precision=s", node.url()))
        .body("cpu value=1 1")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 204);

    let query = http
        .get(format!("{}/query?q=SHOW%20DATABASES", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
    assert_eq!(query.headers()["content-type"], "application/json");
    let body: serde_json::Value = query.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"results":[{"statement_id":0}]}));

    let unknown = http
        .get(format!("{}/nope", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn a_fake_node_records_method_path_query_headers_and_body_of_every_request() {
    let node = FakeNode::start();
    let http = client();
    http.post(format!("{}/write?db=telegraf&rp=autogen", node.url()))
        .header("Authorization", "Token secret")
        .body("cpu,host=a value=1 1\ncpu,host=b value=2 2")
        .send()
        .await
        .unwrap();
    http.post(format!("{}/query", node.url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("q=SELECT+1&db=telegraf")
        .send()
        .await
        .unwrap();

    let requests = node.requests();
    assert_eq!(requests.len(), 2);
    let write = &requests[0];
    assert_eq!(write.method, reqwest::Method::POST);
    assert_eq!(write.uri, "/write?db=telegraf&rp=autogen");
    assert_eq!(write.path(), "/write");
    assert_eq!(write.param("db").as_deref(), Some("telegraf"));
    assert_eq!(write.header("authorization"), Some("Token secret"));
    assert_eq!(
        &write.body[..],
        b"cpu,host=a value=1 1\ncpu,host=b value=2 2"
    );
    assert_eq!(node.write_count(), 1);

    let query = &node.requests_to("/query")[0];
    assert_eq!(query.param("q").as_deref(), Some("SELECT 1"));
    assert_eq!(query.param("db").as_deref(), Some("telegraf"));

    node.clear();
    assert!(node.requests().is_empty());
    assert_eq!(node.write_count(), 0);
}

#[tokio::test]
async fn a_fake_node_with_a_status_behaviour_fails_writes_and_queries_but_still_answers_ping() {
    let node = FakeNode::with_behaviour(Behaviour::Status(500, r#"{"error":"engine: boom"}"#));
    let http = client();

    let write = http
        .post(format!("{}/write?db=x", node.url()))
        .body("cpu value=1")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 500);
    assert_eq!(write.text().await.unwrap(), r#"{"error":"engine: boom"}"#);

    let query = http
        .get(format!("{}/query?q=SELECT+1", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 500);

    let ping = http
        .get(format!("{}/ping", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 204);
    assert_eq!(node.write_count(), 1, "failed writes are recorded too");
}

#[tokio::test]
async fn a_fake_node_behaviour_can_be_switched_while_it_runs() {
    let node = FakeNode::start();
    let http = client();
    let write = || {
        http.post(format!("{}/write?db=x", node.url()))
            .body("cpu value=1")
            .send()
    };
    assert_eq!(write().await.unwrap().status(), 204);
    node.set_behaviour(Behaviour::Status(503, "overloaded"));
    assert_eq!(node.behaviour(), Behaviour::Status(503, "overloaded"));
    let failed = write().await.unwrap();
    assert_eq!(failed.status(), 503);
    assert_eq!(
        failed.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    node.set_behaviour(Behaviour::Ok);
    assert_eq!(write().await.unwrap().status(), 204);
    assert_eq!(node.write_count(), 3);
}

#[tokio::test]
async fn a_slow_fake_node_answers_only_after_its_delay() {
    let node = FakeNode::with_behaviour(Behaviour::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    let write = client()
        .post(format!("{}/write?db=x", node.url()))
        .body("cpu value=1")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 204);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_stalled_fake_node_reads_the_request_and_never_answers() {
    let node = FakeNode::with_behaviour(Behaviour::Stall);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = http
        .post(format!("{}/write?db=x", node.url()))
        .body("cpu value=1")
        .send()
        .await
        .expect_err("a stalled node answered");
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(node.write_count(), 1);
    assert_eq!(node.requests()[0].body_str(), "cpu value=1");
}

#[tokio::test]
async fn a_fake_node_resetting_mid_body_sends_headers_and_part_of_a_query_result_then_drops_the_connection(
) {
    let node = FakeNode::with_behaviour(Behaviour::ResetMidBody);
    let mut response = client()
        .get(format!("{}/query?q=SELECT+*+FROM+cpu&db=x", node.url()))
        .send()
        .await
        .expect("the headers arrive");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let first = response
        .chunk()
        .await
        .expect("the first chunk arrives")
        .expect("the first chunk is not the end");
    assert!(
        support::fake_node::PARTIAL_QUERY_BODY.starts_with(std::str::from_utf8(&first).unwrap())
    );
    let mut rest = Ok(Some(first));
    while let Ok(Some(_)) = rest {
        rest = response.chunk().await;
    }
    assert!(
        rest.is_err(),
        "the body ended cleanly instead of breaking off"
    );

    // Writes are unaffected.
    let write = client()
        .post(format!("{}/write?db=x", node.url()))
        .body("cpu value=1")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 204);
}

#[tokio::test]
async fn a_dropped_fake_node_stops_listening() {
    let node = FakeNode::start();
    let url = format!("{}/ping", node.url());
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 204);
    drop(node);
    let refused = wait_until(Duration::from_secs(5), || async {
        client().get(&url).send().await.is_err()
    })
    .await;
    assert!(
        refused,
        "{url} still answers after the FakeNode was dropped"
    );
}

// ---------------------------------------------------------------- helpers ---

#[tokio::test]
async fn wait_until_reports_whether_the_condition_came_true_in_time() {
    let started = Instant::now();
    assert!(wait_until(Duration::from_secs(1), || async { true }).await);
    assert!(started.elapsed() < Duration::from_millis(100));

    let mut calls = 0;
    assert!(
        wait_until(Duration::from_secs(5), || {
            calls += 1;
            let done = calls >= 3;
            async move { done }
        })
        .await
    );

    let started = Instant::now();
    assert!(!wait_until(Duration::from_millis(200), || async { false }).await);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn free_port_returns_a_port_that_can_be_bound() {
    let port = free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the free port is bindable");
}
