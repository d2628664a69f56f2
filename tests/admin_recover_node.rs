//! `admin recover-node` and the `recover-node` job kind with real `influxd`,
//! Redis and RabbitMQ: a wiped replica is made write-only by an override in
//! Redis, gets the schema and everything before T0 from a healthy replica
//! while writes flow into both, and serves reads again only once verify is
//! clean (the override removed, the routers' receipts waited for, the
//! auto-recover key left to expire); a storage upgrade restores a backup into a
//! fresh node and copies live only the time since the backup (the job's
//! recorded ranges start at the backup's cover); a verify that stays
//! different leaves the override and exits 1, and a second run resumes;
//! without `[routing] redis_url` the command is refused with exit 2 (1 when
//! that Redis is down); through a real router that follows the overrides
//! (merged from branch `overrides`), every read stays complete from the
//! moment it applied the override until the node serves reads again.
//!
//! Elsewhere a stand-in thread plays a router, reading the overrides
//! and writing its receipt to `P:routers` as a router does.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use influxdb_router::control::time::parse_time;
use influxdb_router::routing::overrides::{
    overrides_key, overrides_version_key, recover_key, routers_key, Override, Receipt,
};
use support::admin::{Admin, Cluster, Run};
use support::dataset::{self, Server, DB};
use support::jobs::{now_ms, JobQueue, Settings};
use support::Influxd;

/// `n` fresh `influxd`, started side by side.
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

/// A cluster `main` of `nodes`, named `n0`, `n1`, …, all read-write.
fn cluster(nodes: &[Influxd]) -> Cluster {
    nodes
        .iter()
        .enumerate()
        .fold(Cluster::new("main"), |c, (i, n)| {
            c.node(&format!("n{i}"), &n.url(), "read-write")
        })
}

/// A key prefix of its own, routers polling every second.
fn queue(nodes: &[Influxd]) -> JobQueue {
    JobQueue::with(
        &[cluster(nodes)],
        Settings {
            routing_extra: "poll_interval = \"1s\"",
            ..Settings::default()
        },
    )
}

/// Kills `node`, removes its meta, data and WAL, starts it again empty.
fn wipe(node: &Influxd) {
    tokio::task::block_in_place(|| {
        node.stop();
        for dir in ["meta", "data", "wal"] {
            let path = node.dir().join(dir);
            if path.exists() {
                std::fs::remove_dir_all(&path)
                    .unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
            }
        }
        node.start_again();
    });
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Writes one point every `every` to every URL (like a router's fan-out):
/// the first must take each one; the others may refuse (a wiped node has
/// no database: the router would dead-letter those writes).
struct Writer {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<u64>,
}

impl Writer {
    /// Points of `measurement` in `DB`, timed now, or `base + i` with `base`.
    fn start(
        urls: Vec<String>,
        measurement: &'static str,
        base: Option<i64>,
        every: Duration,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut written = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let time = base.map_or_else(now_ns, |b| b + written as i64);
                let line = format!("{measurement},w=t v={written}i {time}");
                for (i, url) in urls.iter().enumerate() {
                    let sent = client
                        .post(format!("{url}/write"))
                        .query(&[("db", DB), ("precision", "ns")])
                        .body(line.clone())
                        .send()
                        .await;
                    let status = sent.as_ref().map(|r| r.status().as_u16()).ok();
                    if i == 0 {
                        assert_eq!(status, Some(204), "write to {url}: {sent:?}");
                    }
                }
                written += 1;
                tokio::time::sleep(every).await;
            }
            written
        });
        Writer { stop, handle }
    }

    /// Stops it; the number of points the first URL took.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("the writer ran to its end")
    }
}

/// A stand-in router: every 100 ms it reads the overrides (noting what
/// `field` holds whenever the version changes) and, `lag` later, writes its
/// receipt for the version it read, as a router acknowledges what it
/// applied. A frozen one refreshes its receipt but never applies anything.
/// Each overrides version a stand-in router saw, and what the field held.
type Seen = Vec<(u64, Option<String>)>;

struct FakeRouter {
    id: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl FakeRouter {
    fn start(q: &JobQueue, id: &str, field: &str, lag: Duration, frozen: bool) -> FakeRouter {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut conn = q.redis();
        let prefix = q.prefix.clone();
        let name = id.to_string();
        let (id, field) = (id.to_string(), field.to_string());
        let (flag, log) = (stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let version: Option<u64> =
                    redis::Commands::get(&mut conn, overrides_version_key(&prefix)).unwrap();
                let version = version.unwrap_or(0);
                let value: Option<String> =
                    redis::Commands::hget(&mut conn, overrides_key(&prefix), &field).unwrap();
                {
                    let mut log = log.lock().unwrap();
                    if log.last().map(|(v, _)| *v) != Some(version) {
                        log.push((version, value));
                    }
                }
                std::thread::sleep(lag);
                let receipt = Receipt {
                    routing_version: 0,
                    overrides_version: if frozen { 0 } else { version },
                    at_ms: now_ms(),
                };
                let text = serde_json::to_string(&receipt).unwrap();
                let _: () =
                    redis::Commands::hset(&mut conn, routers_key(&prefix), &id, text).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        FakeRouter {
            id: name,
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// Waits until its first receipt is in Redis (a router unknown to
    /// Redis is not waited for).
    async fn wait_for_first_receipt(&self, q: &JobQueue) {
        let ok = support::wait_until(Duration::from_secs(10), || async {
            redis::Commands::hexists(&mut q.redis(), routers_key(&q.prefix), &self.id).unwrap()
        })
        .await;
        assert!(ok, "the stand-in router wrote no receipt");
    }

    /// Stops it: each overrides version it saw and what `field` held then.
    fn stop(mut self) -> Vec<(u64, Option<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("the stand-in router ran");
        }
        let seen = self.seen.lock().unwrap().clone();
        seen
    }
}

impl Drop for FakeRouter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The override of `main/<node>` now.
fn override_of(q: &JobQueue, node: &str) -> Option<Override> {
    let value: Option<String> = redis::Commands::hget(
        &mut q.redis(),
        overrides_key(&q.prefix),
        format!("main/{node}"),
    )
    .unwrap();
    value.map(|v| serde_json::from_str(&v).expect("an override"))
}

fn overrides_version(q: &JobQueue) -> u64 {
    let v: Option<u64> =
        redis::Commands::get(&mut q.redis(), overrides_version_key(&q.prefix)).unwrap();
    v.unwrap_or(0)
}

/// `SELECT count(v) FROM measurement` in `DB`.
async fn count(server: &Server, measurement: &str) -> u64 {
    let doc = server
        .json(
            &format!("SELECT count(\"v\") FROM \"{measurement}\""),
            Some(DB),
        )
        .await;
    doc.pointer("/results/0/series/0/values/0/1")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn state_files(admin: &Admin) -> Vec<String> {
    std::fs::read_dir(admin.path("buffer").join("admin"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("recover-node-"))
                .collect()
        })
        .unwrap_or_default()
}

async fn verify(q: &JobQueue, from: &str, to: &str) -> Run {
    q.run(&["verify", "--from", from, "--to", to]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_replica_recovers_while_writes_flow_into_both() {
    let nodes = start(2);
    let (a, b) = (Server::of(&nodes[0]), Server::of(&nodes[1]));
    let data = dataset::load(&a).await;
    dataset::load(&b).await;
    let q = queue(&nodes);
    let writer = Writer::start(
        vec![a.url.clone(), b.url.clone()],
        "live",
        None,
        Duration::from_millis(25),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    wipe(&nodes[1]);
    assert!(!b.databases().await.contains(&DB.to_string()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut redis = q.redis();
    // a router that stopped an hour ago is not waited for
    let gone = Receipt {
        routing_version: 0,
        overrides_version: 0,
        at_ms: now_ms() - 3_600_000,
    };
    let _: () = redis::Commands::hset(
        &mut redis,
        routers_key(&q.prefix),
        "gone-router",
        serde_json::to_string(&gone).unwrap(),
    )
    .unwrap();
    // the key auto_recover sets when it enqueues a job for the node
    let key = recover_key(&q.prefix, "main", "n1");
    let _: () = redis::Commands::set(&mut redis, &key, "job-of-auto-recover").unwrap();
    let router = FakeRouter::start(&q, "router-1", "main/n1", Duration::from_millis(700), false);
    router.wait_for_first_receipt(&q).await;

    let run = q
        .run(&["recover-node", "--cluster", "main", "--node", "n1"])
        .await;
    let seen = router.stop();
    run.expect(0);
    let out = run.output();
    assert!(
        out.contains(
            "receipts for overrides version 1: 1 router(s) acknowledged, 1 gone router(s) ignored"
        ),
        "{out}"
    );
    assert!(
        out.contains("receipts for the removal (overrides version 2): 1 router(s) acknowledged"),
        "{out}"
    );
    assert!(!out.contains("warning"), "{out}");
    assert!(out.contains("copied [-inf, "), "{out}");
    assert!(out.contains("override removed"), "{out}");
    // the router saw the node write-only, then without an override
    let during = seen
        .iter()
        .find(|(v, _)| *v == 1)
        .and_then(|(_, o)| o.clone())
        .unwrap_or_else(|| panic!("the router never saw version 1: {seen:?}"));
    let during: Override = serde_json::from_str(&during).unwrap();
    assert_eq!(during.mode, "write-only");
    assert_eq!(during.reason, "recover-node");
    assert!(seen.iter().any(|(v, o)| *v == 2 && o.is_none()), "{seen:?}");
    assert_eq!(override_of(&q, "n1"), None);
    assert_eq!(overrides_version(&q), 2);
    // the auto_recover key stays (until it expires): a flap makes no new job
    let left: bool = redis::Commands::exists(&mut redis, &key).unwrap();
    assert!(left, "the recover key was deleted");
    assert!(
        state_files(&q.admin).is_empty(),
        "{:?}",
        state_files(&q.admin)
    );

    // everything, the history and what was written all along
    let written = writer.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    verify(&q, "main/n0", "main/n1").await.expect(0);
    assert_eq!(count(&b, "live").await, written);
    assert!(written > 20, "{written}");
    let total: u64 = data.counts(DB).values().map(|&n| n as u64).sum();
    assert!(total > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_upgrade_restores_a_backup_and_copies_only_the_time_since() {
    let nodes = start(3);
    let (a, b, c) = (
        Server::of(&nodes[0]),
        Server::of(&nodes[1]),
        Server::of(&nodes[2]),
    );
    dataset::load(&a).await;
    dataset::load(&b).await;
    let mut q = queue(&nodes);
    let writer = Writer::start(
        vec![a.url.clone(), b.url.clone(), c.url.clone()],
        "live",
        None,
        Duration::from_millis(25),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir = q.admin.path("backup-of-n1");
    let dir_text = dir.display().to_string();
    q.run(&["backup", "--from", "main/n1", "--out", &dir_text])
        .await
        .expect(0);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let taken = parse_time(manifest["created"].as_str().unwrap()).unwrap();
    assert_eq!(manifest["end"], "+inf");
    // writes go on after the backup
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let w = q.worker(&[]);
    let id = q
        .enqueue(&[
            "recover-node",
            "--cluster",
            "main",
            "--node",
            "n2",
            "--from-backup",
            &dir_text,
        ])
        .await;
    let job = q
        .wait_state(&id, &["done", "failed"], Duration::from_secs(120), &[&w])
        .await;
    assert_eq!(job.state(), "done", "{:#?}\n{}", job.fields, w.log_text());
    let ranges: Value = serde_json::from_str(job.field("ranges"))
        .unwrap_or_else(|e| panic!("ranges: {e}: {:#?}", job.fields));
    assert_eq!(ranges["backup_cover_ns"].as_i64(), Some(taken), "{ranges}");
    let since = ranges["since_ns"].as_i64().unwrap();
    assert!(since > taken, "{ranges}");
    let copied = ranges["copied"].as_array().unwrap();
    assert!(!copied.is_empty(), "{ranges}");
    for copy in copied {
        // the backup holds every database: no copy reaches before it
        assert_eq!(copy["start_ns"].as_i64(), Some(taken), "{ranges}");
        assert_eq!(copy["end_ns"].as_i64(), Some(since), "{ranges}");
    }
    assert_eq!(ranges["clean"], true);
    assert!(
        job.field("summary")
            .contains("restored backup covering up to"),
        "{:#?}",
        job.fields
    );
    // the steps and the pieces are in the job's ledger; the live copy moved
    // only points written after the backup, none of the history
    let pieces: std::collections::HashMap<String, String> =
        redis::Commands::hgetall(&mut q.redis(), format!("{}:job:{id}:pieces", q.prefix)).unwrap();
    for step in [
        "step:schema",
        "step:override",
        "step:restore",
        "step:copy",
        "step:verify",
        "step:release",
    ] {
        assert!(pieces.contains_key(step), "{step}: {pieces:#?}");
    }
    assert!(pieces.keys().any(|k| k.starts_with("restore:data/")));
    let copy: Value = serde_json::from_str(&pieces["step:copy"]).unwrap();
    let live_points = copy["points"].as_u64().unwrap();
    assert!(live_points > 0, "{copy}");

    let written = writer.stop().await;
    assert!(live_points < written, "{live_points} of {written}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    verify(&q, "main/n0", "main/n2").await.expect(0);
    assert_eq!(count(&c, "live").await, written);
    assert_eq!(override_of(&q, "n2"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verify_that_stays_different_leaves_the_override_and_a_rerun_resumes() {
    let nodes = start(2);
    let (a, b) = (Server::of(&nodes[0]), Server::of(&nodes[1]));
    dataset::load(&a).await;
    let q = queue(&nodes);
    // a router that is alive but never applies the override
    let stuck = FakeRouter::start(&q, "stuck-router", "main/n1", Duration::ZERO, true);
    stuck.wait_for_first_receipt(&q).await;
    // points before T0 land on the source only, all the time
    let churn = Writer::start(
        vec![a.url.clone()],
        "churn",
        Some(dataset::T2020),
        Duration::from_millis(2),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let run = q
        .run(&["recover-node", "--cluster", "main", "--node", "n1"])
        .await;
    run.expect(1);
    let out = run.output();
    assert!(out.contains("DIFFERS"), "{out}");
    assert!(out.contains("churn"), "{out}");
    assert!(out.contains("the override stays"), "{out}");
    assert!(
        out.contains("router(s) stuck-router did not acknowledge overrides version 1"),
        "{out}"
    );
    let held = override_of(&q, "n1").expect("the override stays");
    assert_eq!(held.mode, "write-only");
    assert_eq!(state_files(&q.admin).len(), 1);

    // the cause goes away: the same command resumes after the copy
    churn.stop().await;
    stuck.stop();
    let _: () =
        redis::Commands::hdel(&mut q.redis(), routers_key(&q.prefix), "stuck-router").unwrap();
    let run = q
        .run(&["recover-node", "--cluster", "main", "--node", "n1"])
        .await;
    run.expect(0);
    let out = run.output();
    assert!(out.contains("live copy: done earlier"), "{out}");
    assert!(
        out.contains(&format!(
            "write-only already since {}",
            influxdb_router::control::time::format_time(held.since_ns)
        )),
        "{out}"
    );
    assert_eq!(override_of(&q, "n1"), None);
    verify(&q, "main/n0", "main/n1").await.expect(0);
    assert!(count(&b, "churn").await > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_the_command_is_refused() {
    let cluster = Cluster::new("main")
        .node("n0", "http://127.0.0.1:9", "read-write")
        .node("n1", "http://127.0.0.1:10", "read-write");
    // not configured: a usage error naming the setting
    let admin = Admin::with_clusters(std::slice::from_ref(&cluster));
    let run = admin
        .run(&["recover-node", "--cluster", "main", "--node", "n1"])
        .await;
    run.expect(2);
    assert!(
        run.stderr.contains("[routing] redis_url"),
        "{}",
        run.output()
    );
    // configured but down: a failure
    let admin = Admin::with_clusters_and(
        std::slice::from_ref(&cluster),
        "redis_url = \"redis://127.0.0.1:1/0\"\n",
        "",
    );
    let run = admin
        .run(&["recover-node", "--cluster", "main", "--node", "n1"])
        .await;
    run.expect(1);
    assert!(
        run.stderr.contains("redis://127.0.0.1:1/0"),
        "{}",
        run.output()
    );
}

/// `SELECT count(v) FROM live` through the router: the count, or why not.
async fn count_through(client: &reqwest::Client, router: &str) -> Result<u64, String> {
    let answer = client
        .get(format!("{router}/query"))
        .query(&[("db", DB), ("q", "SELECT count(\"v\") FROM \"live\"")])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = answer.status();
    let text = answer.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {text}"));
    }
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    doc.pointer("/results/0/series/0/values/0/1")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("no count: {text}"))
}

/// A real router follows the override: from the moment it applied it
/// until the node holds everything, every read through it is complete.
#[tokio::test(flavor = "multi_thread")]
async fn reads_through_a_router_stay_complete_while_a_node_recovers() {
    use support::router_process::{RouterProcess, BIND};
    let nodes = start(2);
    let (a, b) = (Server::of(&nodes[0]), Server::of(&nodes[1]));
    dataset::load(&a).await;
    dataset::load(&b).await;
    let q = queue(&nodes);
    let queues = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nbind = \"{BIND}\"\n[health]\ninterval = \"100ms\"\n[buffer]\ndir = {:?}\n\
         [routing]\ndefault_cluster = \"main\"\nredis_url = \"{}\"\namqp_url = \"{}\"\n\
         key_prefix = \"{}\"\npoll_interval = \"1s\"\n\
         [[cluster]]\nname = \"main\"\nnodes = [\n  {{ name = \"n0\", url = \"{}\" }},\n  \
         {{ name = \"n1\", url = \"{}\" }},\n]\n",
        queues.path().display().to_string(),
        support::jobs::REDIS,
        support::jobs::AMQP,
        q.prefix,
        a.url,
        b.url
    );
    let router = tokio::task::block_in_place(|| RouterProcess::start(&config));
    let url = router.url();
    let writer = Writer::start(
        vec![a.url.clone(), b.url.clone()],
        "live",
        None,
        Duration::from_millis(25),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    wipe(&nodes[1]);

    let command = {
        let admin_args = ["recover-node", "--cluster", "main", "--node", "n1"];
        let q = &q;
        async move { q.run(&admin_args).await }
    };
    // reads start once the router applied the override (before that,
    // nothing keeps it from the wiped node: that is the command's job)
    let reader = async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let applied = support::wait_until(Duration::from_secs(30), || async {
            override_of(&q, "n1").is_some()
                && status_mode(&client, &url, "n1").await.as_deref() == Some("write-only")
        })
        .await;
        assert!(applied, "the router never made n1 write-only");
        let mut reads = 0u64;
        let mut last = 0u64;
        let mut after = 0u32;
        loop {
            let count = count_through(&client, &url)
                .await
                .unwrap_or_else(|e| panic!("read {reads} through the router failed: {e}"));
            assert!(count >= last, "read {reads}: {count} points after {last}");
            last = count;
            reads += 1;
            if override_of(&q, "n1").is_none() {
                // and once it serves reads, it holds everything
                after += 1;
                if after > 40 {
                    return reads;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (run, reads) = tokio::join!(command, reader);
    run.expect(0);
    assert!(
        run.stdout
            .contains("receipts for overrides version 1: 1 router(s) acknowledged"),
        "{}",
        run.output()
    );
    assert!(reads > 40, "{reads}");
    let written = writer.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&b, "live").await, written);
    verify(&q, "main/n0", "main/n1").await.expect(0);
}

/// A node's `mode` in a router's `/status`.
async fn status_mode(client: &reqwest::Client, router: &str, node: &str) -> Option<String> {
    let doc: Value = client
        .get(format!("{router}/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let nodes = doc.get("nodes")?.as_array()?;
    let found = nodes
        .iter()
        .find(|n| n.get("name").and_then(Value::as_str) == Some(node))?;
    found.get("mode")?.as_str().map(String::from)
}
