//! A routing change that gives a database a cluster it did not have: the
//! new cluster gets the database, its retention policies and continuous
//! queries before any write of it is routed there, so no write fails with
//! "database not found" (real `influxd`, the config file source). A node
//! of the new cluster that is down at the time gets the statements through
//! its queue, ahead of the writes queued for it.

mod support;

use std::path::Path;
use std::time::Duration;

use influxdb_router::server;
use serde_json::Value;
use support::dataset::Server;
use support::{wait_until, Influxd};

fn start(n: usize) -> Vec<Influxd> {
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n).map(|_| s.spawn(Influxd::start)).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("influxd starts"))
                .collect()
        })
    })
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Clusters `a` (one node) and `b` (two), database `big` routed by `route`.
fn config(queues: &Path, consistency: &str, a: &str, b: &[&str], route: &str) -> String {
    format!(
        "[server]\nbind = \"127.0.0.1:0\"\n[health]\ninterval = \"100ms\"\n\
         [write]\nconsistency = \"{consistency}\"\n[buffer]\ndir = {:?}\n\
         [routing]\nwatch = true\ndefault_cluster = \"a\"\n\
         [[cluster]]\nname = \"a\"\nnodes = [{{ name = \"a1\", url = \"{a}\" }}]\n\
         [[cluster]]\nname = \"b\"\nnodes = [{{ name = \"b1\", url = \"{}\" }}, {{ name = \"b2\", url = \"{}\" }}]\n\
         [[route]]\ndatabase = \"big\"\n{route}\n",
        queues.display().to_string(),
        b[0],
        b[1]
    )
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn version(url: &str) -> u64 {
    let status: Value = reqwest::get(format!("{url}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["routing"]["version"].as_u64().unwrap_or(0)
}

/// Writes one line to each of 40 measurements of `big` through the router;
/// the statuses that were not 204, with their bodies.
async fn write_all(url: &str, round: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    for m in 0..40 {
        let line = format!("m{m},host=h v={round}i {}", now_ns() + m);
        let response = client
            .post(format!("{url}/write?db=big"))
            .body(line)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status != 204 {
            failures.push(format!(
                "m{m}: {status} {}",
                response.text().await.unwrap_or_default()
            ));
        }
    }
    failures
}

/// Databases, retention policies and continuous queries of `big` on `server`.
async fn schema_of(server: &Server) -> (bool, Vec<Vec<Value>>, Vec<Value>) {
    let has = server.databases().await.contains(&"big".to_string());
    if !has {
        return (false, Vec::new(), Vec::new());
    }
    let mut rps = server.rows("SHOW RETENTION POLICIES ON big", None).await;
    rps.sort_by_key(|r| r[0].to_string());
    let doc = server.json("SHOW CONTINUOUS QUERIES", None).await;
    let cqs = doc["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "big")
        .map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    (true, rps, cqs)
}

async fn prepare_big(a: &Server) {
    for q in [
        "CREATE DATABASE big WITH DURATION 30d REPLICATION 1 SHARD DURATION 1d NAME month",
        "CREATE RETENTION POLICY forever ON big DURATION INF REPLICATION 1 SHARD DURATION 1w",
        "CREATE CONTINUOUS QUERY hourly ON big BEGIN SELECT mean(v) AS v INTO big.forever.m_1h \
         FROM big.month.m0 GROUP BY time(1h) END",
        "CREATE DATABASE other",
    ] {
        a.json(q, None).await;
    }
}

/// Measurements of `big` on `server`.
async fn measurements(server: &Server) -> Vec<String> {
    server.names("SHOW MEASUREMENTS ON big", None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_that_newly_holds_a_database_gets_its_schema_before_its_writes() {
    let nodes = start(3);
    let (a, b1, b2) = (
        Server::of(&nodes[0]),
        Server::of(&nodes[1]),
        Server::of(&nodes[2]),
    );
    prepare_big(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, queues) = (dir.path().join("router.toml"), dir.path().join("queues"));
    let b_urls = [b1.url.as_str(), b2.url.as_str()];
    std::fs::write(
        &path,
        config(&queues, "all", &a.url, &b_urls, "cluster = \"a\""),
    )
    .unwrap();
    let router = server::spawn_watching(&path).await.unwrap();
    let url = router.url();
    assert!(write_all(&url, 0).await.is_empty());
    assert_eq!(version(&url).await, 1);

    // `big` is now sharded over a and b; b has nothing of it
    replace(
        &path,
        &config(&queues, "all", &a.url, &b_urls, "shard = [\"a\", \"b\"]"),
    );
    // write right away and on: every write lands (consistency `all`: each
    // node must take it), before, during and after the swap
    let mut round = 1;
    let mut failures = Vec::new();
    while version(&url).await < 2 && round < 2000 {
        failures.extend(write_all(&url, round).await);
        round += 1;
    }
    assert_eq!(version(&url).await, 2, "the table was not swapped");
    for _ in 0..3 {
        failures.extend(write_all(&url, round).await);
        round += 1;
    }
    assert!(failures.is_empty(), "{failures:?}");

    // both nodes of b have the schema of big, and not the other database
    let want = schema_of(&a).await;
    assert!(want.0 && want.1.len() == 2 && want.2.len() == 1, "{want:?}");
    for node in [&b1, &b2] {
        assert_eq!(schema_of(node).await, want, "{}", node.url);
        assert!(!node.databases().await.contains(&"other".to_string()));
        // and the writes routed to b after the swap
        assert!(!measurements(node).await.is_empty(), "{}", node.url);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_down_at_the_change_gets_the_schema_through_its_queue_ahead_of_its_writes() {
    let nodes = start(3);
    let (a, b1, b2) = (
        Server::of(&nodes[0]),
        Server::of(&nodes[1]),
        Server::of(&nodes[2]),
    );
    prepare_big(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, queues) = (dir.path().join("router.toml"), dir.path().join("queues"));
    let b_urls = [b1.url.as_str(), b2.url.as_str()];
    std::fs::write(
        &path,
        config(&queues, "any", &a.url, &b_urls, "cluster = \"a\""),
    )
    .unwrap();
    let router = server::spawn_watching(&path).await.unwrap();
    let url = router.url();
    tokio::task::block_in_place(|| nodes[2].stop());
    replace(
        &path,
        &config(&queues, "any", &a.url, &b_urls, "shard = [\"a\", \"b\"]"),
    );
    let swapped = wait_until(Duration::from_secs(15), || async {
        version(&url).await == 2
    })
    .await;
    assert!(swapped, "the table was not swapped");
    let failures = write_all(&url, 1).await;
    assert!(failures.is_empty(), "{failures:?}");
    let want = schema_of(&a).await;
    assert_eq!(schema_of(&b1).await, want);
    let on_b1 = measurements(&b1).await;
    assert!(!on_b1.is_empty());

    // b2 returns: its queue gives it the schema, then the writes
    tokio::task::block_in_place(|| nodes[2].start_again());
    let caught_up = wait_until(Duration::from_secs(30), || async {
        schema_of(&b2).await.0 && measurements(&b2).await == on_b1
    })
    .await;
    assert!(
        caught_up,
        "b2: {:?}, measurements {:?}",
        schema_of(&b2).await,
        measurements(&b2).await
    );
    assert_eq!(schema_of(&b2).await, want);
    let count = |s: &Server| {
        let s = s.clone();
        async move { s.json("SELECT count(v) FROM /.*/", Some("big")).await }
    };
    assert_eq!(count(&b2).await, count(&b1).await);
}

/// Clusters `a`, `b`, `c` of one fake node each; `d` routed to `target`;
/// `c`'s node in `mode`.
fn three_fakes(queues: &Path, nodes: [&str; 3], target: &str, mode: &str) -> String {
    format!(
        "[server]\nbind = \"127.0.0.1:0\"\n[health]\ninterval = \"100ms\"\n[buffer]\ndir = {:?}\n\
         [routing]\nwatch = true\ndefault_cluster = \"a\"\n\
         [[cluster]]\nname = \"a\"\nnodes = [{{ name = \"a1\", url = \"{}\" }}]\n\
         [[cluster]]\nname = \"b\"\nnodes = [{{ name = \"b1\", url = \"{}\" }}]\n\
         [[cluster]]\nname = \"c\"\nnodes = [{{ name = \"c1\", url = \"{}\", mode = \"{mode}\" }}]\n\
         [[route]]\ndatabase = \"d\"\ncluster = \"{target}\"\n",
        queues.display().to_string(),
        nodes[0],
        nodes[1],
        nodes[2]
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_table_never_replaces_a_newer_one_and_requests_flow_while_it_is_held() {
    use support::fake_node::Behaviour;
    use support::FakeNode;
    // a's node answers writes at once but takes 30 s to list its databases
    let a = FakeNode::with_behaviour(Behaviour::SlowQueryBody(Duration::from_secs(30)));
    let (b, c) = (FakeNode::start(), FakeNode::start());
    let urls = [a.url(), b.url(), c.url()];
    let urls = [urls[0].as_str(), urls[1].as_str(), urls[2].as_str()];
    let dir = tempfile::tempdir().unwrap();
    let (path, queues) = (dir.path().join("router.toml"), dir.path().join("queues"));
    std::fs::write(&path, three_fakes(&queues, urls, "a", "read-write")).unwrap();
    let router = server::spawn_watching(&path).await.unwrap();
    let url = router.url();
    let write = || async {
        reqwest::Client::new()
            .post(format!("{url}/write?db=d"))
            .body("m v=1")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };

    // candidate 1 moves d to b: held while a is asked for its databases
    replace(&path, &three_fakes(&queues, urls, "b", "read-write"));
    let asked = wait_until(Duration::from_secs(5), || async {
        a.requests_to("/query")
            .iter()
            .any(|r| r.param("q").as_deref() == Some("SHOW DATABASES"))
    })
    .await;
    assert!(asked, "a was not asked for its databases");
    // requests flow meanwhile, on the live table
    let started = std::time::Instant::now();
    assert_eq!(write().await, 204);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!((a.write_count(), b.write_count()), (1, 0));
    assert_eq!(version(&url).await, 1);

    // candidate 2 keeps d on a and changes only c's node: published at once
    replace(&path, &three_fakes(&queues, urls, "a", "read-only"));
    let swapped = wait_until(Duration::from_secs(5), || async {
        version(&url).await == 2
    })
    .await;
    assert!(swapped, "the newer candidate was not published");
    // candidate 1's copy ends (timeout): it is not published after it
    tokio::time::sleep(super_timeout()).await;
    assert_eq!(version(&url).await, 2);
    assert_eq!(write().await, 204);
    assert_eq!((a.write_count(), b.write_count()), (2, 0));
}

/// Longer than the router's hold of a candidate (10 s).
fn super_timeout() -> Duration {
    Duration::from_secs(12)
}
