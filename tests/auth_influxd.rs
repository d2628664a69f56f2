//! Authentication through the router, against real `influxd` nodes with
//! `auth-enabled = true`: a request the nodes would refuse is never queued
//! and replayed with more rights than the client had, whether a node is
//! down, every node is down, or the node refuses the credentials only at
//! replay.

mod support;

use std::time::Duration;

use support::router::{RouterBuilder, TestRouter};
use support::{wait_until, Influxd};

const ADMIN: (&str, &str) = ("admin", "admin-secret");
const EVENTUALLY: Duration = Duration::from_secs(30);

/// Two auth-enabled nodes, each with the admin user, a database `victim`
/// holding one point, and a router configured with the admin's credentials
/// (for health checks and control-plane work).
async fn fleet() -> (Influxd, Influxd, TestRouter) {
    let a = Influxd::start_with_admin(ADMIN.0, ADMIN.1).await;
    let b = Influxd::start_with_admin(ADMIN.0, ADMIN.1).await;
    for node in [&a, &b] {
        node.create_database("victim").await;
        node.write("victim", "m v=1 1000000000").await;
    }
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .cluster("username", "\"admin\"")
        .cluster("password", "\"admin-secret\"")
        .write("consistency", "\"any\"")
        .start()
        .await;
    (a, b, router)
}

async fn post(
    router: &TestRouter,
    path: &str,
    auth: Option<(&str, &str)>,
    body: &str,
) -> (u16, String) {
    let mut request = router
        .client
        .post(format!("{}{path}", router.url()))
        .body(body.to_string());
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("router answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn query(router: &TestRouter, q: &str, auth: Option<(&str, &str)>) -> (u16, String) {
    let path = format!(
        "/query?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("q", q)
            .finish()
    );
    post(router, &path, auth, "").await
}

async fn queue_records(router: &TestRouter, node: &str) -> (u64, u64) {
    let status = router.get("/status").await.json();
    let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
    let entry = nodes
        .iter()
        .find(|n| n["name"] == node)
        .cloned()
        .unwrap_or_default();
    let queue = &entry["queue"];
    (
        queue["records"].as_u64().unwrap_or(u64::MAX),
        queue["dead_letters"].as_u64().unwrap_or(0),
    )
}

async fn count(node: &Influxd, db: &str) -> u64 {
    let answer = node.query("SELECT count(*) FROM /.*/", Some(db)).await;
    answer
        .pointer("/results/0/series")
        .and_then(|s| s.as_array())
        .map(|series| {
            series
                .iter()
                .filter_map(|s| s.pointer("/values/0/1").and_then(|v| v.as_u64()))
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_a_node_refuses_are_not_queued_for_the_node_that_is_down() {
    let (a, b, router) = fleet().await;
    router.wait_for_health("b", true).await;
    tokio::task::block_in_place(|| b.stop());
    router.wait_for_health("b", false).await;

    let wrong = Some(("admin", "wrong"));
    let (status, body) = post(&router, "/write?db=victim", wrong, "m v=2 2000000000").await;
    assert_eq!(status, 401, "a write with a wrong password: {body}");
    let (status, body) = post(&router, "/write?db=victim", None, "m v=3 3000000000").await;
    assert_eq!(status, 401, "a write without credentials: {body}");
    let (status, body) = query(&router, "CREATE DATABASE intruder", None).await;
    assert_eq!(status, 401, "CREATE DATABASE without credentials: {body}");
    let (status, body) = query(&router, "DROP DATABASE victim", wrong).await;
    assert_eq!(status, 401, "DROP DATABASE with a wrong password: {body}");
    assert_eq!(
        queue_records(&router, "b").await.0,
        0,
        "nothing was queued for b"
    );

    // a good write is still queued for b, and replayed with its own credentials
    let (status, body) = post(&router, "/write?db=victim", Some(ADMIN), "m v=4 4000000000").await;
    assert_eq!(status, 204, "{body}");
    tokio::task::block_in_place(|| b.start_again());
    let replayed = wait_until(EVENTUALLY, || async { count(&b, "victim").await == 2 }).await;
    assert!(replayed, "b holds {} points", count(&b, "victim").await);
    assert!(b.databases().await.contains(&"victim".to_string()));
    assert!(!b.databases().await.contains(&"intruder".to_string()));
    assert_eq!(count(&a, "victim").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_node_down_only_credentials_a_node_accepted_before_are_queued() {
    let (a, b, router) = fleet().await;
    router.wait_for_health("a", true).await;
    router.wait_for_health("b", true).await;
    // the router learns these credentials from a node's acceptance
    let (status, body) = post(&router, "/write?db=victim", Some(ADMIN), "m v=5 5000000000").await;
    assert_eq!(status, 204, "{body}");
    tokio::task::block_in_place(|| {
        a.stop();
        b.stop();
    });
    router.wait_for_health("a", false).await;
    router.wait_for_health("b", false).await;

    let (status, body) = post(&router, "/write?db=victim", None, "m v=6 6000000000").await;
    assert_eq!(
        status, 503,
        "an anonymous write with every node down: {body}"
    );
    let (status, body) = post(
        &router,
        "/write?db=victim",
        Some(("admin", "guess")),
        "m v=7 7000000000",
    )
    .await;
    assert_eq!(
        status, 503,
        "unknown credentials with every node down: {body}"
    );
    let (status, body) = query(&router, "DROP DATABASE victim", None).await;
    assert_eq!(
        status, 503,
        "an anonymous DROP DATABASE with every node down: {body}"
    );
    assert_eq!(queue_records(&router, "a").await.0, 0);

    let (status, body) = post(&router, "/write?db=victim", Some(ADMIN), "m v=8 8000000000").await;
    assert_eq!(status, 204, "known credentials are queued: {body}");
    tokio::task::block_in_place(|| {
        a.start_again();
        b.start_again();
    });
    for node in [&a, &b] {
        let replayed = wait_until(EVENTUALLY, || async { count(node, "victim").await == 3 }).await;
        assert!(replayed, "holds {} points", count(node, "victim").await);
    }
    assert!(b.databases().await.contains(&"victim".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_a_node_refuses_at_replay_are_dead_lettered_not_retried() {
    let (a, b, router) = fleet().await;
    // bob exists on a only: a accepts his write, b will refuse it at replay
    let answer = a
        .query(
            "CREATE USER bob WITH PASSWORD 'bob-secret'; GRANT WRITE ON victim TO bob",
            None,
        )
        .await;
    assert!(answer.pointer("/results/0/error").is_none(), "{answer}");
    router.wait_for_health("b", true).await;
    tokio::task::block_in_place(|| b.stop());
    router.wait_for_health("b", false).await;
    let bob = Some(("bob", "bob-secret"));
    let (status, body) = post(&router, "/write?db=victim", bob, "m v=9 9000000000").await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(queue_records(&router, "b").await.0, 1);

    tokio::task::block_in_place(|| b.start_again());
    let settled = wait_until(EVENTUALLY, || async {
        queue_records(&router, "b").await == (0, 1)
    })
    .await;
    assert!(
        settled,
        "b's queue: {:?}",
        queue_records(&router, "b").await
    );
    assert_eq!(count(&b, "victim").await, 1, "b stored nothing of bob's");
    assert_eq!(count(&a, "victim").await, 2);
}
