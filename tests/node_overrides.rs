//! Node mode overrides kept in Redis, router receipts and `[control]
//! auto_recover`, against real `influxd` nodes, Redis (127.0.0.1:6379),
//! RabbitMQ (127.0.0.1:5672, guest/guest) and, for SRV discovery, `dnsmasq`.
//! Each test uses a key prefix of its own and removes its keys, exchanges
//! and queues at the end.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use influxdb_router::config::Config;
use influxdb_router::control::receipts::wait_for_receipts;
use influxdb_router::routing::overrides::{self, Override, Receipt};
use influxdb_router::routing::source::redis as routes;
use influxdb_router::server;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::Value;
use support::dnsmasq::{Dnsmasq, RECORD};
use support::jobs::{require_servers, AMQP, REDIS};
use support::router_process::{RouterProcess, BIND};
use support::{free_port, wait_until, Influxd};

/// A key prefix of its own; its keys, exchanges and queues go away on drop.
struct Prefix(String);

impl Prefix {
    fn new() -> Prefix {
        require_servers();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Prefix(format!("test-ovr-{}-{nanos}", std::process::id()))
    }

    fn redis(&self) -> redis::Connection {
        redis::Client::open(REDIS)
            .and_then(|c| c.get_connection())
            .expect("a Redis connection")
    }

    /// Stores `value` as the override of `cluster`/`node` with a new
    /// version, announces it, and returns the version.
    async fn set_override(&self, cluster: &str, node: &str, value: &str) -> u64 {
        let version: (u64,) = redis::pipe()
            .atomic()
            .hset(
                overrides::overrides_key(&self.0),
                overrides::field(cluster, node),
                value,
            )
            .ignore()
            .incr(overrides::overrides_version_key(&self.0), 1)
            .query(&mut self.redis())
            .unwrap();
        self.announce(version.0).await;
        version.0
    }

    /// Removes the override of `cluster`/`node` with a new version, announced.
    async fn clear_override(&self, cluster: &str, node: &str) -> u64 {
        let version: (u64,) = redis::pipe()
            .atomic()
            .hdel(
                overrides::overrides_key(&self.0),
                overrides::field(cluster, node),
            )
            .ignore()
            .incr(overrides::overrides_version_key(&self.0), 1)
            .query(&mut self.redis())
            .unwrap();
        self.announce(version.0).await;
        version.0
    }

    async fn announce(&self, version: u64) {
        routes::publish_body(AMQP, &self.0, &overrides::notice(version))
            .await
            .expect("the notice is published");
    }

    fn receipt(&self, router: &str) -> Option<Receipt> {
        let text: Option<String> = redis::cmd("HGET")
            .arg(overrides::routers_key(&self.0))
            .arg(router)
            .query(&mut self.redis())
            .unwrap();
        text.map(|t| serde_json::from_str(&t).expect("a receipt"))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        if let Ok(mut conn) = redis::Client::open(REDIS).and_then(|c| c.get_connection()) {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.0))
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
        let prefix = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let props = lapin::ConnectionProperties::default();
                if let Ok(connection) = lapin::Connection::connect(AMQP, props).await {
                    if let Ok(channel) = connection.create_channel().await {
                        for queue in [format!("{prefix}.jobs"), format!("{prefix}.jobs.dead")] {
                            let _ = channel.queue_delete(&queue, Default::default()).await;
                        }
                        for exchange in [routes::exchange(&prefix), format!("{prefix}.jobs.dead")] {
                            let _ = channel.exchange_delete(&exchange, Default::default()).await;
                        }
                        let _ = channel.close(200, "bye").await;
                    }
                    let _ = connection.close(200, "bye").await;
                }
            });
        })
        .join();
    }
}

/// Waits for every live router to apply `version`; returns the laggards.
async fn wait_applied(
    prefix: &Prefix,
    poll: Duration,
    version: u64,
    timeout: Duration,
) -> Vec<String> {
    let conn = redis::Client::open(REDIS)
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("an async Redis connection");
    wait_for_receipts(&conn, &prefix.0, poll, timeout, |r| {
        r.overrides_version >= version
    })
    .await
    .unwrap()
    .lagging
}

async fn status(url: &str) -> Value {
    reqwest::get(format!("{url}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The `/status` entry of node `name`, if the table has it.
async fn node_status(url: &str, name: &str) -> Option<Value> {
    status(url).await["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .cloned()
}

async fn mode(url: &str, name: &str) -> String {
    let node = node_status(url, name)
        .await
        .unwrap_or_else(|| panic!("no node {name}"));
    node["mode"].as_str().unwrap().to_string()
}

async fn wait_for_mode(url: &str, name: &str, expected: &str) {
    let reached = wait_until(Duration::from_secs(10), || async {
        node_status(url, name)
            .await
            .is_some_and(|n| n["mode"] == expected)
    })
    .await;
    assert!(
        reached,
        "node {name} never became {expected}; /status: {}",
        status(url).await
    );
}

/// `SELECT count(v) FROM marker` through `url`: whether it found the marker
/// (only node a holds it).
async fn sees_marker(url: &str) -> bool {
    let answer: Value = reqwest::Client::new()
        .post(format!("{url}/query"))
        .form(&[("q", "SELECT count(v) FROM marker"), ("db", "db")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer.pointer("/results/0/error").is_none(), "{answer}");
    answer.pointer("/results/0/series").is_some()
}

async fn write_through(url: &str, line: &str) {
    let response = reqwest::Client::new()
        .post(format!("{url}/write?db=db"))
        .body(line.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        204,
        "{}",
        response.text().await.unwrap()
    );
}

/// Two influxd nodes with database `db`; only `a` has the point `marker`.
async fn two_nodes() -> (Influxd, Influxd) {
    let (a, b) = tokio::task::spawn_blocking(|| {
        std::thread::scope(|s| {
            let a = s.spawn(Influxd::start);
            let b = s.spawn(Influxd::start);
            (a.join().unwrap(), b.join().unwrap())
        })
    })
    .await
    .unwrap();
    for node in [&a, &b] {
        node.create_database("db").await;
    }
    a.write("db", "marker v=1 1000000000").await;
    (a, b)
}

fn cluster(a: &Influxd, b: &Influxd) -> String {
    format!(
        "[[cluster]]\nname = \"main\"\nnodes = [{{ name = \"a\", url = \"{}\" }}, {{ name = \"b\", url = \"{}\" }}]\n",
        a.url(),
        b.url()
    )
}

/// The checks both sources share: node `a` is read from until an override
/// makes it write-only; then it still takes writes, answers no read, the
/// receipt reports the version; clearing the override restores reads.
async fn override_round(prefix: &Prefix, url: &str, a: &Influxd, poll: Duration) {
    wait_for_mode(url, "a", "read-write").await;
    // the router reads node a first while both are idle and healthy
    for _ in 0..5 {
        assert!(
            sees_marker(url).await,
            "reads go to node a before the override"
        );
    }
    let router_id = status(url).await["routing"]["router_id"]
        .as_str()
        .expect("a router id in /status")
        .to_string();
    let swaps = status(url).await["routing"]["swaps"].as_u64().unwrap();

    let value = Override {
        mode: "write-only".into(),
        since_ns: 1_700_000_000_000_000_000,
        reason: "test: recovering".into(),
    };
    let version = prefix.set_override("main", "a", &value.to_json()).await;
    wait_for_mode(url, "a", "write-only").await;
    let shown = node_status(url, "a").await.unwrap();
    assert_eq!(shown["override"]["reason"], "test: recovering", "{shown}");
    assert_eq!(shown["override"]["since"], 1_700_000_000, "{shown}");
    assert_eq!(shown["override"]["source"], "redis", "{shown}");
    assert!(node_status(url, "b").await.unwrap()["override"].is_null());
    let after = status(url).await;
    assert_eq!(after["routing"]["overrides_version"], version);
    assert_eq!(
        after["routing"]["swaps"],
        swaps + 1,
        "one swap for the override"
    );

    // no read reaches node a; writes still do
    for _ in 0..20 {
        assert!(
            !sees_marker(url).await,
            "a read reached the write-only node"
        );
    }
    write_through(url, "live v=2 2000000000").await;
    let on_a = a.query("SELECT count(v) FROM live", Some("db")).await;
    assert_eq!(
        on_a.pointer("/results/0/series/0/values/0/1"),
        Some(&Value::from(1)),
        "the write-only node takes writes: {on_a}"
    );

    // the receipt says what was applied
    let lagging = wait_applied(prefix, poll, version, Duration::from_secs(10)).await;
    assert!(lagging.is_empty(), "{lagging:?}");
    let receipt = prefix.receipt(&router_id).expect("a receipt");
    assert_eq!(receipt.overrides_version, version);

    // an override that changes nothing (a node that does not exist) is no swap
    let ghost = prefix.set_override("main", "ghost", &value.to_json()).await;
    let applied = wait_until(Duration::from_secs(10), || async {
        status(url).await["routing"]["overrides_version"] == ghost
    })
    .await;
    assert!(applied, "{}", status(url).await);
    assert_eq!(status(url).await["routing"]["swaps"], swaps + 1);

    // clearing it restores reads
    let cleared = prefix.clear_override("main", "a").await;
    wait_for_mode(url, "a", "read-write").await;
    assert!(node_status(url, "a").await.unwrap()["override"].is_null());
    // (node a answers first again; a busy machine may fail a health check
    // of it now and then, sending a read to b meanwhile)
    let back = wait_until(Duration::from_secs(10), || sees_marker(url)).await;
    assert!(back, "reads go to node a again");
    let lagging = wait_applied(prefix, poll, cleared, Duration::from_secs(10)).await;
    assert!(lagging.is_empty(), "{lagging:?}");
    assert_eq!(
        prefix.receipt(&router_id).unwrap().overrides_version,
        cleared
    );

    // a receipt that never satisfies the predicate: the router lags
    let lagging = wait_applied(prefix, poll, cleared + 100, Duration::from_millis(500)).await;
    assert_eq!(lagging, [router_id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn overrides_follow_redis_with_a_file_source() {
    let prefix = Prefix::new();
    let (a, b) = two_nodes().await;
    let queues = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nbind = \"{BIND}\"\n[health]\ninterval = \"100ms\"\n[buffer]\ndir = {:?}\n\
         [routing]\ndefault_cluster = \"main\"\nredis_url = \"{REDIS}\"\namqp_url = \"{AMQP}\"\n\
         key_prefix = \"{}\"\npoll_interval = \"30s\"\n{}",
        queues.path().display().to_string(),
        prefix.0,
        cluster(&a, &b)
    );
    let router = tokio::task::block_in_place(|| RouterProcess::start(&config));
    // the poll is 30 s: every change below arrives through its notice
    let url = router.url();
    let subscribed = wait_until(Duration::from_secs(10), || async {
        router
            .stderr_text()
            .contains("listening for routing change notices")
    })
    .await;
    assert!(subscribed, "{}", router.stderr_text());
    override_round(&prefix, &url, &a, Duration::from_secs(30)).await;

    // a malformed value is logged and ignored
    let version = prefix.set_override("main", "a", "not json").await;
    let applied = wait_until(Duration::from_secs(10), || async {
        status(&url).await["routing"]["overrides_version"] == version
    })
    .await;
    assert!(applied, "{}", status(&url).await);
    assert_eq!(mode(&url, "a").await, "read-write");
    assert!(sees_marker(&url).await);
    let logged = router.stderr_text();
    assert!(
        logged.contains("malformed node mode override ignored") && logged.contains("main/a"),
        "{logged}"
    );
    // the routing source itself still works: /status routing.source is the file
    assert!(status(&url).await["routing"]["notices_subscribed"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn overrides_follow_redis_with_a_redis_source_and_apply_at_start() {
    let prefix = Prefix::new();
    let (a, b) = two_nodes().await;
    let document = format!("[routing]\ndefault_cluster = \"main\"\n{}", cluster(&a, &b));
    routes::push(REDIS, AMQP, &prefix.0, &document, "test")
        .await
        .unwrap();
    // an override stored before the router starts holds from its first answer
    let early = Override::write_only("set before start");
    prefix.set_override("main", "a", &early.to_json()).await;
    let queues = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\n[health]\ninterval = \"100ms\"\n[buffer]\ndir = {:?}\n\
         [routing]\nsource = \"redis\"\nredis_url = \"{REDIS}\"\namqp_url = \"{AMQP}\"\n\
         key_prefix = \"{}\"\npoll_interval = \"1s\"\n\
         [[cluster]]\nname = \"main\"\nnodes = [{{ name = \"a\", url = \"{}\" }}]\n",
        queues.path().display().to_string(),
        prefix.0,
        a.url()
    );
    let router = server::spawn(Config::from_toml_str(&text, "test").unwrap(), "test")
        .await
        .unwrap();
    let url = router.url();
    assert_eq!(
        mode(&url, "a").await,
        "write-only",
        "{}",
        status(&url).await
    );
    assert!(
        !sees_marker(&url).await,
        "the first read went to the write-only node"
    );
    let started = status(&url).await;
    assert_eq!(started["routing"]["document_version"], 1, "{started}");
    // a routing document notice and an override notice are told apart: the
    // document's version is reported in the receipt
    let router_id = started["routing"]["router_id"]
        .as_str()
        .unwrap()
        .to_string();
    let reported = wait_until(Duration::from_secs(5), || async {
        prefix
            .receipt(&router_id)
            .is_some_and(|r| (r.routing_version, r.overrides_version) == (1, 1))
    })
    .await;
    assert!(reported, "{:?}", prefix.receipt(&router_id));

    prefix.clear_override("main", "a").await;
    override_round(&prefix, &url, &a, Duration::from_secs(1)).await;
    let pushed = routes::push(
        REDIS,
        AMQP,
        &prefix.0,
        &document.replace("\"b\"", "\"b2\""),
        "test",
    )
    .await
    .unwrap();
    let reported = wait_until(Duration::from_secs(10), || async {
        prefix
            .receipt(&router_id)
            .is_some_and(|r| r.routing_version == pushed.version)
    })
    .await;
    assert!(reported, "{:?}", prefix.receipt(&router_id));
    router.shutdown().await;
    let gone = wait_until(Duration::from_secs(5), || async {
        prefix.receipt(&router_id).is_none()
    })
    .await;
    assert!(gone, "a router that stops removes its receipt");
}

/// Messages ready on queue `name` (0 when it does not exist).
async fn ready(name: &str) -> u32 {
    let connection = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ");
    let channel = connection.create_channel().await.expect("a channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let count = channel
        .queue_declare(name, passive, FieldTable::default())
        .await
        .map(|q| q.message_count())
        .unwrap_or(0);
    let _ = connection.close(200, "bye").await;
    count
}

/// The ids of the job records of `prefix`.
fn job_ids(prefix: &Prefix) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(format!("{}:jobs", prefix.0))
        .arg(0)
        .arg(-1)
        .query(&mut prefix.redis())
        .unwrap()
}

/// Waits until node `name` is in `/status` of every router and returns the
/// mode each first showed it with.
async fn first_modes(urls: &[String], name: &str) -> Vec<String> {
    let mut seen: Vec<Option<String>> = vec![None; urls.len()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen.iter().any(Option::is_none) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {name} never appeared: {seen:?}"
        );
        for (i, url) in urls.iter().enumerate() {
            if seen[i].is_none() {
                if let Some(node) = node_status(url, name).await {
                    seen[i] = Some(node["mode"].as_str().unwrap().to_string());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_recover_holds_a_new_srv_node_and_enqueues_one_job() {
    let prefix = Prefix::new();
    let (a, b) = tokio::task::spawn_blocking(|| {
        std::thread::scope(|s| {
            let a = s.spawn(Influxd::start);
            let b = s.spawn(Influxd::start);
            (a.join().unwrap(), b.join().unwrap())
        })
    })
    .await
    .unwrap();
    let dns_port = free_port();
    let mut dns = Dnsmasq::start(dns_port, &[a.port()]);
    let queues = tempfile::tempdir().unwrap();
    let text = |n: usize| {
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n[health]\ninterval = \"100ms\"\n[buffer]\ndir = {:?}\n\
             [routing]\ndefault_cluster = \"dns\"\ndns_servers = [\"127.0.0.1:{dns_port}\"]\n\
             redis_url = \"{REDIS}\"\namqp_url = \"{AMQP}\"\nkey_prefix = \"{}\"\npoll_interval = \"1s\"\n\
             [control]\nauto_recover = true\n\
             [[cluster]]\nname = \"dns\"\nsrv = \"{RECORD}\"\nsrv_interval = \"200ms\"\n",
            queues.path().join(format!("r{n}")).display().to_string(),
            prefix.0,
        )
    };
    let config = |n: usize| Config::from_toml_str(&text(n), "test").unwrap();
    // what the new replica must get from the one already there
    a.create_database("d").await;
    let history: String = (0..200)
        .map(|i| {
            format!(
                "m,host=h{} v={i}i {}\n",
                i % 4,
                1_600_000_000_000_000_000u64 + i * 1_000_000_000
            )
        })
        .collect();
    a.write("d", &history).await;
    let routers = [
        server::spawn(config(1), "test").await.unwrap(),
        server::spawn(config(2), "test").await.unwrap(),
    ];
    let urls: Vec<String> = routers.iter().map(|r| r.url()).collect();
    let (name_a, name_b) = (
        format!("dns-localhost-{}", a.port()),
        format!("dns-localhost-{}", b.port()),
    );
    // the first discovery is no new node
    assert_eq!(
        first_modes(&urls, &name_a).await,
        ["read-write", "read-write"]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(job_ids(&prefix).is_empty());
    for url in &urls {
        assert_eq!(mode(url, &name_a).await, "read-write");
    }

    // scaled up by one: the new node is write-only from its first table on
    dns.restart(&[a.port(), b.port()]);
    assert_eq!(
        first_modes(&urls, &name_b).await,
        ["write-only", "write-only"]
    );
    let field = overrides::field("dns", &name_b);
    let stored = wait_until(Duration::from_secs(10), || async {
        let value: Option<String> = redis::cmd("HGET")
            .arg(overrides::overrides_key(&prefix.0))
            .arg(&field)
            .query(&mut prefix.redis())
            .unwrap();
        value.is_some()
    })
    .await;
    assert!(stored, "the override was never stored");
    let claimed: Option<String> = redis::cmd("GET")
        .arg(overrides::recover_key(&prefix.0, "dns", &name_b))
        .query(&mut prefix.redis())
        .unwrap();
    let claimed = claimed.expect("the recover key is set");
    // let the other router finish its attempt
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids = job_ids(&prefix);
    assert_eq!(
        ids,
        std::slice::from_ref(&claimed),
        "exactly one job, the claimed one"
    );
    let record: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{}:job:{claimed}", prefix.0))
        .query(&mut prefix.redis())
        .unwrap();
    assert_eq!(record["kind"], "recover-node");
    let args: Vec<String> = serde_json::from_str(&record["args"]).unwrap();
    assert_eq!(args, ["--cluster", "dns", "--node", name_b.as_str()]);
    assert_eq!(ready(&format!("{}.jobs", prefix.0)).await, 1);
    // both routers honour the override from Redis now, and report it
    let version: u64 = redis::cmd("GET")
        .arg(overrides::overrides_version_key(&prefix.0))
        .query(&mut prefix.redis())
        .unwrap();
    let poll = Duration::from_secs(1);
    let lagging = wait_applied(&prefix, poll, version, Duration::from_secs(10)).await;
    assert!(lagging.is_empty(), "{lagging:?}");
    // both routers are live and report it
    let reported = wait_applied(&prefix, poll, version + 1, Duration::from_millis(300)).await;
    assert_eq!(reported.len(), 2, "{reported:?}");
    for url in &urls {
        let node = node_status(url, &name_b).await.unwrap();
        assert_eq!(node["mode"], "write-only", "{node}");
        assert_eq!(node["override"]["source"], "redis", "{node}");
        assert!(
            node["override"]["reason"]
                .as_str()
                .unwrap()
                .contains(&claimed),
            "{node}"
        );
    }

    // a flap (record removed and added again) makes no second job
    dns.restart(&[a.port()]);
    for url in &urls {
        let left = wait_until(Duration::from_secs(10), || async {
            node_status(url, &name_b).await.is_none()
        })
        .await;
        assert!(left);
    }
    dns.restart(&[a.port(), b.port()]);
    assert_eq!(
        first_modes(&urls, &name_b).await,
        ["write-only", "write-only"]
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(job_ids(&prefix), std::slice::from_ref(&claimed));
    assert_eq!(ready(&format!("{}.jobs", prefix.0)).await, 1);

    // a worker runs the one job: the new node gets the data, the override
    // goes, and the node serves reads
    let worker_config = queues.path().join("worker.toml");
    std::fs::write(&worker_config, text(3)).unwrap();
    let worker = tokio::task::spawn_blocking(move || {
        std::process::Command::new(support::admin::BIN)
            .args(["admin", "-c"])
            .arg(&worker_config)
            .args(["worker", "--once"])
            .env("RUST_LOG", "warn")
            .output()
            .expect("the worker runs")
    })
    .await
    .unwrap();
    assert!(
        worker.status.success(),
        "worker: {}",
        String::from_utf8_lossy(&worker.stderr)
    );
    let record: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{}:job:{claimed}", prefix.0))
        .query(&mut prefix.redis())
        .unwrap();
    assert_eq!(record["state"], "done", "{record:?}");
    for url in &urls {
        wait_for_mode(url, &name_b, "read-write").await;
    }
    let counted = b.query("SELECT count(v) FROM m", Some("d")).await;
    assert_eq!(
        counted["results"][0]["series"][0]["values"][0][1], 200,
        "{counted}"
    );
    // flapping after that: held for as long as it takes to find the claim
    // taken (too short to observe reliably), then the node serves reads
    // again; still one job
    dns.restart(&[a.port()]);
    for url in &urls {
        let left = wait_until(Duration::from_secs(10), || async {
            node_status(url, &name_b).await.is_none()
        })
        .await;
        assert!(left);
    }
    dns.restart(&[a.port(), b.port()]);
    first_modes(&urls, &name_b).await;
    for url in &urls {
        wait_for_mode(url, &name_b, "read-write").await;
    }
    assert_eq!(job_ids(&prefix), [claimed]);
    // the worker took the one message; no other came
    assert_eq!(ready(&format!("{}.jobs", prefix.0)).await, 0);
}

/// The table that first has a new node already has it write-only: checked
/// on a single-threaded runtime right after the publish, before the claim
/// task (which needs Redis round trips) can run at all.
#[tokio::test(flavor = "current_thread")]
async fn a_new_node_is_write_only_in_the_table_that_first_has_it() {
    let prefix = Prefix::new();
    let (a, b) = tokio::task::spawn_blocking(|| {
        std::thread::scope(|s| {
            let a = s.spawn(Influxd::start);
            let b = s.spawn(Influxd::start);
            (a.join().unwrap(), b.join().unwrap())
        })
    })
    .await
    .unwrap();
    let queues = tempfile::tempdir().unwrap();
    let text = |nodes: &str| {
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n[health]\ninterval = \"100ms\"\n[buffer]\ndir = {:?}\n\
             [routing]\ndefault_cluster = \"main\"\nredis_url = \"{REDIS}\"\namqp_url = \"{AMQP}\"\n\
             key_prefix = \"{}\"\npoll_interval = \"1s\"\n[control]\nauto_recover = true\n\
             [[cluster]]\nname = \"main\"\nnodes = [{nodes}]\n",
            queues.path().display().to_string(),
            prefix.0,
        )
    };
    let one = format!("{{ name = \"a\", url = \"{}\" }}", a.url());
    let two = format!("{one}, {{ name = \"b\", url = \"{}\" }}", b.url());
    let router = server::spawn(Config::from_toml_str(&text(&one), "test").unwrap(), "test")
        .await
        .unwrap();
    let shared = router.shared().clone();
    let scaled = Config::from_toml_str(&text(&two), "test").unwrap();
    let applied = server::reload::apply_config(&shared, scaled, "test: scaled up");
    assert!(
        matches!(applied, server::reload::Applied::Swapped(_)),
        "{applied:?}"
    );
    let table = shared.routing.load();
    let modes: Vec<(String, String)> = table
        .nodes()
        .map(|n| (n.name().to_string(), n.mode().to_string()))
        .collect();
    assert_eq!(
        modes,
        [
            ("a".to_string(), "read-write".to_string()),
            ("b".into(), "write-only".into())
        ]
    );
    // the running configuration keeps the configured mode
    let running = server::reload::running_config(&shared);
    assert_eq!(running.clusters[0].nodes[1].mode.as_str(), "read-write");
    // then the claim: the override in Redis, one job, and the hold gives way to it
    let url = router.url();
    let claimed = wait_until(Duration::from_secs(10), || async {
        node_status(&url, "b").await.unwrap()["override"]["source"] == "redis"
    })
    .await;
    assert!(claimed, "{}", status(&url).await);
    assert_eq!(mode(&url, "b").await, "write-only");
    assert_eq!(job_ids(&prefix).len(), 1);
    let stored: Option<String> = redis::cmd("HGET")
        .arg(overrides::overrides_key(&prefix.0))
        .arg(overrides::field("main", "b"))
        .query(&mut prefix.redis())
        .unwrap();
    let stored: Override = serde_json::from_str(&stored.expect("the override")).unwrap();
    assert_eq!(stored.mode, "write-only");
    assert!(stored.reason.contains(&job_ids(&prefix)[0]), "{stored:?}");
}
