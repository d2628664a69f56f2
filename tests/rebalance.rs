//! `admin rebalance` and `admin routes push` recording moves (issue 18):
//! real influxd clusters, a router following the routing document in
//! Redis (RabbitMQ notices), and a writer and a reader running the whole
//! time. Needs Redis on 127.0.0.1:6379 and RabbitMQ on 127.0.0.1:5672.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::admin::Cluster;
use support::jobs::{JobQueue, Settings};
use support::router_process::{RouterProcess, BIND};
use support::Influxd;

const REDIS: &str = "redis://127.0.0.1:6379/0";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DB: &str = "big";
const MEASUREMENTS: usize = 12;
const POINTS: usize = 300;

/// Three one-node clusters, the routing document's TOML with `big`
/// sharded over `shard`, and the rest of a configuration around it.
struct Fleet {
    nodes: Vec<Influxd>,
    /// The key prefix, the admin configuration (routing from Redis) and
    /// the cleanup of Redis keys and job queues.
    queue: JobQueue,
    router: RouterProcess,
    _buffer: tempfile::TempDir,
}

fn clusters_toml(nodes: &[Influxd]) -> String {
    let mut text = String::from("[routing]\ndefault_cluster = \"a\"\n");
    for (name, node) in ["a", "b", "c"].iter().zip(nodes) {
        text.push_str(&format!(
            "\n[[cluster]]\nname = \"{name}\"\nnodes = [{{ name = \"{name}1\", url = \"{}\" }}]\n",
            node.url()
        ));
    }
    text
}

fn document(nodes: &[Influxd], shard: &[&str]) -> String {
    let list: Vec<String> = shard.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "{}\n[[route]]\ndatabase = \"{DB}\"\nshard = [{}]\n",
        clusters_toml(nodes),
        list.join(", ")
    )
}

impl Fleet {
    async fn start() -> Fleet {
        let nodes: Vec<Influxd> = (0..3).map(|_| Influxd::start()).collect();
        let clusters: Vec<Cluster> = ["a", "b", "c"]
            .iter()
            .zip(&nodes)
            .map(|(name, node)| {
                Cluster::new(name).node(&format!("{name}1"), &node.url(), "read-write")
            })
            .collect();
        let settings = Settings {
            routing_extra: "source = \"redis\"\npoll_interval = \"1s\"",
            ..Settings::default()
        };
        let queue = JobQueue::with(&clusters, settings);
        let prefix = queue.prefix.clone();
        let routing = format!(
            "source = \"redis\"\nredis_url = {REDIS:?}\namqp_url = {AMQP:?}\nkey_prefix = {prefix:?}\npoll_interval = \"1s\"\n"
        );
        // the first document: big sharded over a and b
        std::fs::write(queue.admin.path("v1.toml"), document(&nodes, &["a", "b"])).unwrap();
        queue.run(&["routes", "push", "v1.toml"]).await.expect(0);
        let buffer = tempfile::tempdir().unwrap();
        let config = format!(
            "[server]\nbind = \"{BIND}\"\n[buffer]\ndir = {:?}\n[health]\ninterval = \"500ms\"\n\
             [routing]\ndefault_cluster = \"a\"\n{routing}\n{}",
            buffer.path().display().to_string(),
            clusters_toml(&nodes).replace("[routing]\ndefault_cluster = \"a\"\n", "")
        );
        let router = RouterProcess::start(&config);
        let fleet = Fleet {
            nodes,
            queue,
            router,
            _buffer: buffer,
        };
        // the router follows the document: big is on a and b
        let status_has_route = || async {
            let status = fleet.status().await;
            status["routing"]["version"].as_u64().unwrap_or(0) >= 1
        };
        assert!(
            support::wait_until(Duration::from_secs(15), status_has_route).await,
            "the router did not apply the routing document"
        );
        fleet
    }

    async fn status(&self) -> Value {
        let url = format!("{}/status", self.router.url());
        match reqwest::get(&url).await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// `{measurement: count}` of `big` as the router answers.
    async fn counts(&self) -> Result<BTreeMap<String, u64>, String> {
        counts_via(&self.router.url()).await
    }

    /// The measurements of `big` each node holds.
    async fn held(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for node in &self.nodes {
            out.push(fleet_measurements(node).await);
        }
        out
    }

    fn document(&self) -> String {
        let mut conn = self.queue.redis();
        redis::cmd("GET")
            .arg(format!("{}:routing", self.queue.prefix))
            .query(&mut conn)
            .unwrap_or_default()
    }
}

async fn counts_via(router: &str) -> Result<BTreeMap<String, u64>, String> {
    let url = format!("{router}/query");
    let response = reqwest::Client::new()
        .get(&url)
        .query(&[("db", DB), ("q", "SELECT count(v) FROM /^m/")])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    if let Some(error) = body["results"][0]["error"].as_str() {
        return Err(error.to_string());
    }
    let mut counts = BTreeMap::new();
    for series in body["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = series["name"].as_str().unwrap_or_default().to_string();
        let rows = series["values"].as_array().map(Vec::len).unwrap_or(0);
        if rows != 1 {
            return Err(format!(
                "measurement {name} answered with {rows} rows: {body}"
            ));
        }
        let n = series["values"][0][1].as_u64().unwrap_or(0);
        if counts.insert(name.clone(), n).is_some() {
            return Err(format!("measurement {name} answered twice: {body}"));
        }
    }
    Ok(counts)
}

fn name(i: usize) -> String {
    format!("m{i:02}")
}

async fn write(router: &str, body: String) -> bool {
    let url = format!("{router}/write?db={DB}");
    matches!(reqwest::Client::new().post(&url).body(body).send().await, Ok(r) if r.status() == 204)
}

/// Writes one point at a time to the measurements in turn, counting those
/// acknowledged, until stopped.
fn start_writer(
    router: String,
    acked: Arc<Mutex<BTreeMap<String, u64>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut i = 0u64;
        let mut failed = 0;
        while !stop.load(Ordering::Relaxed) {
            let m = name(i as usize % MEASUREMENTS);
            let line = format!(
                "{m},host=w v={i}i {}\n",
                1_700_000_000_000_000_000u64 + 1_000_000 + i
            );
            if write(&router, line).await {
                *acked.lock().unwrap().entry(m).or_default() += 1;
            } else {
                failed += 1;
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        failed
    })
}

/// Reads the counts again and again; each must be at least what was
/// acknowledged before the read started. Returns (reads, problems).
fn start_reader(
    router: String,
    acked: Arc<Mutex<BTreeMap<String, u64>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let (mut reads, mut problems) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let before = acked.lock().unwrap().clone();
            match counts_via(&router).await {
                Ok(counts) => {
                    for i in 0..MEASUREMENTS {
                        let m = name(i);
                        let want = POINTS as u64 + before.get(&m).copied().unwrap_or(0);
                        let got = counts.get(&m).copied().unwrap_or(0);
                        if got < want {
                            problems.push(format!(
                                "read {reads}: {m} has {got} points, {want} were written"
                            ));
                        }
                    }
                }
                Err(e) => problems.push(format!("read {reads}: {e}")),
            }
            reads += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (reads, problems)
    })
}

/// Creates `big` and writes `points` points to each measurement, `step`
/// seconds apart.
async fn load_history(fleet: &Fleet, points: usize, step: u64) {
    let router = fleet.router.url();
    let create = reqwest::Client::new()
        .post(format!("{router}/query"))
        .form(&[("q", format!("CREATE DATABASE {DB}"))])
        .send()
        .await
        .unwrap();
    assert!(create.status().is_success());
    for i in 0..MEASUREMENTS {
        let m = name(i);
        let body: String = (0..points)
            .map(|p| {
                format!(
                    "{m},host=h{} v={p}i,f={p}.5 {}\n",
                    p % 3,
                    1_600_000_000_000_000_000u64 + p as u64 * step * 1_000_000_000
                )
            })
            .collect();
        assert!(write(&router, body).await, "history of {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_third_cluster_joins_and_rebalance_moves_data_while_reads_stay_complete() {
    let fleet = Fleet::start().await;
    load_history(&fleet, POINTS, 1).await;
    let before = fleet.held().await;
    assert!(before[2].is_empty(), "c holds nothing yet: {before:?}");

    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(fleet.router.url(), acked.clone(), stop.clone());
    let reader = start_reader(fleet.router.url(), acked.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // c joins the shard rule; the push records the moves this implies
    std::fs::write(
        fleet.queue.admin.path("v2.toml"),
        document(&fleet.nodes, &["a", "b", "c"]),
    )
    .unwrap();
    let push = fleet.queue.run(&["routes", "push", "v2.toml"]).await;
    push.expect(0);
    assert!(push.stdout.contains("move(s)"), "{}", push.output());
    let document = fleet.document();
    let recorded = document.matches("[[move]]").count();
    assert!(recorded > 0, "no move recorded:\n{document}");
    assert!(document.contains("to = \"c\""), "{document}");

    let run = fleet.queue.run(&["rebalance", "--db", DB]).await;
    run.expect(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let failed_writes = writer.await.unwrap();
    let (reads, problems) = reader.await.unwrap();
    assert!(
        problems.is_empty(),
        "{} of {reads} reads were incomplete:\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        run.output()
    );
    assert!(reads > 10, "only {reads} reads");
    assert_eq!(failed_writes, 0, "writes failed during the rebalance");

    // every measurement lives on exactly one cluster, with every point once
    let held = fleet.held().await;
    for i in 0..MEASUREMENTS {
        let m = name(i);
        let on: Vec<usize> = (0..3).filter(|c| held[*c].contains(&m)).collect();
        assert_eq!(on.len(), 1, "{m} is on clusters {on:?}: {held:?}");
    }
    assert!(!held[2].is_empty(), "nothing moved to c: {held:?}");
    assert_eq!(held[2].len(), recorded, "c holds what was moved: {held:?}");
    let counts = fleet.counts().await.unwrap();
    let acked = acked.lock().unwrap().clone();
    for i in 0..MEASUREMENTS {
        let m = name(i);
        let want = POINTS as u64 + acked.get(&m).copied().unwrap_or(0);
        assert_eq!(counts.get(&m).copied(), Some(want), "{m}");
    }
    // the moves are finished and gone from the document
    assert!(
        !fleet.document().contains("[[move]]"),
        "{}",
        fleet.document()
    );
    // a second run has nothing to do
    let again = fleet.queue.run(&["rebalance", "--db", DB]).await;
    again.expect(0);
    assert!(
        again.stdout.contains("nothing to move"),
        "{}",
        again.output()
    );
}

/// Each measurement on exactly one cluster, `points` points in each, no
/// move left in the document; the number of measurements on c.
async fn assert_moved(fleet: &Fleet, points: u64) -> usize {
    let held = fleet.held().await;
    for i in 0..MEASUREMENTS {
        let m = name(i);
        let on: Vec<usize> = (0..3).filter(|c| held[*c].contains(&m)).collect();
        assert_eq!(on.len(), 1, "{m} is on clusters {on:?}: {held:?}");
    }
    let counts = fleet.counts().await.unwrap();
    for i in 0..MEASUREMENTS {
        assert_eq!(counts.get(&name(i)).copied(), Some(points), "{}", name(i));
    }
    assert!(
        !fleet.document().contains("[[move]]"),
        "{}",
        fleet.document()
    );
    held[2].len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebalance_job_whose_worker_is_killed_resumes_to_the_same_end() {
    let mut fleet = Fleet::start().await;
    let points = 1500;
    load_history(&fleet, points, 3600).await;
    std::fs::write(
        fleet.queue.admin.path("v2.toml"),
        document(&fleet.nodes, &["a", "b", "c"]),
    )
    .unwrap();
    fleet
        .queue
        .run(&["routes", "push", "v2.toml"])
        .await
        .expect(0);
    let recorded = fleet.document().matches("[[move]]").count();
    assert!(recorded > 0);

    let id = fleet.queue.enqueue(&["rebalance", "--db", DB]).await;
    let mut first = fleet.queue.worker(&[]);
    let started = support::wait_until(Duration::from_secs(30), || {
        let pieces = fleet.queue.pieces(&id);
        async move { pieces >= 2 }
    })
    .await;
    assert!(
        started,
        "the job recorded no piece: {:#?}\n{}",
        fleet.queue.job(&id),
        first.log_text()
    );
    first.kill9();
    let state = fleet.queue.job(&id).state().to_string();
    assert_eq!(
        state, "running",
        "the job ended before the worker was killed; make it longer"
    );
    let pieces_at_kill = fleet.queue.pieces(&id);

    let second = fleet.queue.worker(&[]);
    let job = fleet
        .queue
        .wait_state(
            &id,
            &["done", "failed"],
            Duration::from_secs(120),
            &[&second],
        )
        .await;
    assert_eq!(job.state(), "done", "{job:#?}\n{}", second.log_text());
    assert_eq!(job.workers().len(), 2, "{job:#?}");
    assert!(fleet.queue.pieces(&id) >= pieces_at_kill);
    assert_eq!(assert_moved(&fleet, points as u64).await, recorded);
}

#[tokio::test]
async fn with_a_routing_file_rebalance_plans_then_copies_then_deletes_step_by_step() {
    let nodes: Vec<Influxd> = (0..3).map(|_| Influxd::start()).collect();
    // everything was written to a; the file now shards big over a, b and c
    nodes[0].create_database(DB).await;
    for i in 0..MEASUREMENTS {
        let m = name(i);
        let body: String = (0..50)
            .map(|p| {
                format!(
                    "{m} v={p}i {}\n",
                    1_600_000_000_000_000_000u64 + p * 1_000_000_000
                )
            })
            .collect();
        nodes[0].write(DB, &body).await;
    }
    let clusters: Vec<Cluster> = ["a", "b", "c"]
        .iter()
        .zip(&nodes)
        .map(|(n, node)| Cluster::new(n).node(&format!("{n}1"), &node.url(), "read-write"))
        .collect();
    let route = format!("\n[[route]]\ndatabase = \"{DB}\"\nshard = [\"a\", \"b\", \"c\"]\n");
    let admin = support::admin::Admin::with_clusters_and(&clusters, "", &route);
    let config = admin.path("router.toml");

    let plan = admin.run(&["rebalance", "--plan", "--db", DB]).await;
    plan.expect(0);
    let blocks = plan.stdout.matches("[[move]]").count();
    assert!(blocks > 0 && blocks < MEASUREMENTS, "{}", plan.output());
    assert!(plan.stdout.contains("from = \"a\""), "{}", plan.output());

    // without the moves in the file, nothing is copied
    let refused = admin.run(&["rebalance", "--db", DB]).await;
    refused.expect(1);
    assert!(refused.stderr.contains("[[move]]"), "{}", refused.output());
    assert!(nodes[1].databases().await.iter().all(|d| d != DB) || fleet_empty(&nodes[1..]).await);

    let moves: String = plan
        .stdout
        .split("\n\n")
        .filter(|b| b.contains("[[move]]"))
        .map(|b| format!("{b}\n"))
        .collect();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n{moves}")).unwrap();
    let copied = admin.run(&["rebalance", "--db", DB]).await;
    copied.expect(0);
    assert!(
        copied.stdout.contains("state = \"done\""),
        "{}",
        copied.output()
    );
    // copied, not yet deleted
    assert_eq!(fleet_measurements(&nodes[0]).await.len(), MEASUREMENTS);

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("state = \"copying\"", "state = \"done\""),
    )
    .unwrap();
    let deleted = admin.run(&["rebalance", "--db", DB]).await;
    deleted.expect(0);
    assert!(
        deleted.stdout.contains("remove its [[move]]"),
        "{}",
        deleted.output()
    );
    let on_a = fleet_measurements(&nodes[0]).await;
    let (on_b, on_c) = (
        fleet_measurements(&nodes[1]).await,
        fleet_measurements(&nodes[2]).await,
    );
    assert_eq!(
        on_a.len() + on_b.len() + on_c.len(),
        MEASUREMENTS,
        "{on_a:?} {on_b:?} {on_c:?}"
    );
    assert_eq!(MEASUREMENTS - on_a.len(), blocks);
}

async fn fleet_measurements(node: &Influxd) -> Vec<String> {
    let answer = node.query("SHOW MEASUREMENTS", Some(DB)).await;
    answer["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r[0].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether none of `nodes` holds a measurement of the database.
async fn fleet_empty(nodes: &[Influxd]) -> bool {
    for node in nodes {
        if !fleet_measurements(node).await.is_empty() {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verify_that_stays_different_stops_the_rebalance_and_deletes_nothing() {
    let fleet = Fleet::start().await;
    load_history(&fleet, 100, 1).await;
    std::fs::write(
        fleet.queue.admin.path("v2.toml"),
        document(&fleet.nodes, &["a", "b", "c"]),
    )
    .unwrap();
    fleet
        .queue
        .run(&["routes", "push", "v2.toml"])
        .await
        .expect(0);
    let document = fleet.document();
    // a measurement that moves to c, and where it is, from the recorded moves
    let block = document
        .split("[[move]]")
        .skip(1)
        .find(|block| block.contains("to = \"c\""))
        .expect("a move to c");
    let field = |key: &str| {
        block
            .split(&format!("{key} = \""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string()
    };
    let (moved, from) = (field("measurement"), field("from"));
    let source = &fleet.nodes[if from == "a" { 0 } else { 1 }];
    // something keeps writing old points of it to its old cluster only,
    // behind the router's back: the new owner never catches up
    let stop = Arc::new(AtomicBool::new(false));
    let sneaking = {
        let (stop, url, moved) = (stop.clone(), source.url(), moved.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let line = format!(
                    "{moved},host=sneak v={i}i {}\n",
                    1_600_000_000_000_000_000u64 + 500_000_000 + i
                );
                let _ = reqwest::Client::new()
                    .post(format!("{url}/write?db={DB}"))
                    .body(line)
                    .send()
                    .await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            i
        })
    };

    let run = fleet.queue.run(&["rebalance", "--db", DB]).await;
    stop.store(true, Ordering::Relaxed);
    let sneaked = sneaking.await.unwrap();
    run.expect(1);
    assert!(run.stderr.contains("DIFFERS"), "{}", run.output());
    assert!(run.stderr.contains(&moved), "{}", run.output());
    // nothing was deleted and reads still come from where the data was
    let held = fleet.held().await;
    assert!(
        held[0].contains(&moved) || held[1].contains(&moved),
        "{moved} was deleted from its old cluster: {held:?}"
    );
    let document = fleet.document();
    assert!(
        document.contains(&format!("measurement = \"{moved}\"")),
        "{document}"
    );
    let counts = fleet.counts().await.unwrap();
    assert_eq!(counts.get(&moved).copied(), Some(100 + sneaked));
}
