//! `source = "redis"`: the routing table from Redis, RabbitMQ change notices,
//! the poll, the cache, and `admin routes push`. These tests need the
//! machine's Redis (127.0.0.1:6379) and RabbitMQ (127.0.0.1:5672,
//! guest/guest); each uses its own key prefix and removes its keys and
//! exchange at the end.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use influxdb_router::config::Config;
use influxdb_router::routing::source::redis as routes;
use influxdb_router::server::{self, RunningRouter};
use serde_json::Value;
use support::{free_port, wait_until, FakeNode};

const REDIS: &str = "redis://127.0.0.1:6379/0";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Fails the test with how to start a missing server.
fn require_servers() {
    let up = |port: u16| {
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).is_ok()
    };
    assert!(
        up(6379),
        "Redis is not running on 127.0.0.1:6379; start it with `redis-server --daemonize yes --port 6379`"
    );
    assert!(
        up(5672),
        "RabbitMQ is not running on 127.0.0.1:5672; start it with `rabbitmq-server -detached` (user guest/guest)"
    );
}

/// A key prefix of its own, whose keys and exchange go away on drop.
struct Prefix(String);

impl Prefix {
    fn new() -> Prefix {
        require_servers();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Prefix(format!("test-{}-{nanos}", std::process::id()))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        if let Ok(mut conn) = redis::Client::open(REDIS).and_then(|c| c.get_connection()) {
            let _: Result<(), _> = redis::cmd("DEL")
                .arg(routes::document_key(&self.0))
                .arg(routes::version_key(&self.0))
                .query(&mut conn);
        }
        let exchange = routes::exchange(&self.0);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let props = lapin::ConnectionProperties::default();
                if let Ok(connection) = lapin::Connection::connect(AMQP, props).await {
                    if let Ok(channel) = connection.create_channel().await {
                        let _ = channel.exchange_delete(&exchange, Default::default()).await;
                        let _ = channel.close(200, "bye").await;
                    }
                    let _ = connection.close(200, "bye").await;
                }
            });
        })
        .join();
    }
}

fn config(queues: &Path, prefix: &str, redis_url: &str, poll: &str, node_url: &str) -> Config {
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\n[health]\ninterval = \"100ms\"\n[buffer]\ndir = {:?}\n\
         [routing]\nsource = \"redis\"\nkey_prefix = \"{prefix}\"\nredis_url = \"{redis_url}\"\n\
         amqp_url = \"{AMQP}\"\npoll_interval = \"{poll}\"\n\
         [[cluster]]\nname = \"main\"\nnodes = [{{ name = \"a\", url = \"{node_url}\" }}]\n",
        queues.display().to_string()
    );
    Config::from_toml_str(&text, "test").unwrap()
}

/// A routing document with one cluster of one node.
fn document(node: &str, url: &str) -> String {
    format!(
        "[routing]\ndefault_cluster = \"main\"\n[[cluster]]\nname = \"main\"\nnodes = [{{ name = \"{node}\", url = \"{url}\" }}]\n"
    )
}

async fn start(
    queues: &Path,
    prefix: &str,
    redis_url: &str,
    poll: &str,
    node: &str,
) -> RunningRouter {
    server::spawn(config(queues, prefix, redis_url, poll, node), "test")
        .await
        .unwrap()
}

async fn status(url: &str) -> Value {
    reqwest::get(format!("{url}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn write(url: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/write?db=d"))
        .body("m v=1 1\n")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Writes the keys directly, without a notice.
async fn store(prefix: &str, text: &str) -> u64 {
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (version,): (u64,) = redis::pipe()
        .atomic()
        .set(routes::document_key(prefix), text)
        .ignore()
        .incr(routes::version_key(prefix), 1)
        .query_async(&mut conn)
        .await
        .unwrap();
    version
}

/// Asserts that every router runs routing table `version` within a second,
/// and that a write through it is answered 204.
async fn switch_within_a_second(routers: &[&RunningRouter], version: u64) {
    for router in routers {
        let url = router.url();
        let switched = wait_until(Duration::from_secs(1), || async {
            status(&url).await["routing"]["version"] == version
        })
        .await;
        assert!(
            switched,
            "no switch within 1 s: {}",
            status(&url).await["routing"]
        );
        assert_eq!(write(&url).await, 204);
    }
}

/// Waits until each router's notice queue is bound to the exchange.
async fn let_listeners_bind(routers: &[&RunningRouter]) {
    for router in routers {
        let url = router.url();
        let bound = wait_until(Duration::from_secs(10), || async {
            let status: Value = reqwest::get(format!("{url}/status"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            status["routing"]["notices_subscribed"] == true
        })
        .await;
        assert!(bound, "router {url} did not subscribe to routing notices (is RabbitMQ running? rabbitmq-server -detached)");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_routers_switch_within_a_second_of_a_push() {
    let prefix = Prefix::new();
    let (a, b, c) = (FakeNode::start(), FakeNode::start(), FakeNode::start());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r1 = start(d1.path(), &prefix.0, REDIS, "30s", &a.url()).await;
    let r2 = start(d2.path(), &prefix.0, REDIS, "30s", &a.url()).await;
    let_listeners_bind(&[&r1, &r2]).await;

    let pushed = routes::push(REDIS, AMQP, &prefix.0, &document("b", &b.url()), "test")
        .await
        .unwrap();
    assert_eq!(pushed.version, 1);
    pushed.notice.unwrap();
    // /status reports the document's version (SPEC section 4), not a count of swaps
    switch_within_a_second(&[&r1, &r2], pushed.version).await;
    assert_eq!(status(&r1.url()).await["routing"]["table_version"], 2);
    assert_eq!((a.write_count(), b.write_count()), (0, 2));

    // the same through the binary
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(&file, document("c", &c.url())).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_influxdb-router"))
        .args(["admin", "routes", "push"])
        .arg(&file)
        .args(["--redis", REDIS, "--amqp", AMQP, "--key-prefix", &prefix.0])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("version 2"));
    switch_within_a_second(&[&r1, &r2], 2).await;
    assert_eq!(c.write_count(), 2);

    // show prints the stored version and document
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_influxdb-router"))
        .args(["admin", "routes", "show", "--key-prefix", &prefix.0])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(shown.starts_with("# version: 2\n"), "{shown}");
    assert!(shown.contains(&c.url()), "{shown}");

    // an invalid file is refused by push, with every problem
    std::fs::write(&file, "[[cluster]]\nname = \"x\"\nnodes = []\nbogus = 1\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_influxdb-router"))
        .args(["admin", "routes", "push"])
        .arg(&file)
        .args(["--key-prefix", &prefix.0])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bogus"), "{stderr}");
    r1.shutdown().await;
    r2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_notice_is_picked_up_by_the_poll() {
    let prefix = Prefix::new();
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let dir = tempfile::tempdir().unwrap();
    let router = start(dir.path(), &prefix.0, REDIS, "300ms", &a.url()).await;
    let url = router.url();
    let version = store(&prefix.0, &document("b", &b.url())).await;
    let switched = wait_until(Duration::from_secs(3), || async {
        status(&url).await["routing"]["version"] == version
    })
    .await;
    assert!(switched, "{}", status(&url).await["routing"]);
    assert_eq!(write(&url).await, 204);
    assert_eq!((a.write_count(), b.write_count()), (0, 1));
    // the same version again is a no-op
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(status(&url).await["routing"]["version"], version);
    assert_eq!(status(&url).await["routing"]["swaps"], 1);
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_unreachable_at_start_the_router_starts_from_its_cache() {
    let prefix = Prefix::new();
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let dir = tempfile::tempdir().unwrap();
    // a previous run with Redis reachable leaves the cache behind
    store(&prefix.0, &document("b", &b.url())).await;
    let first = start(dir.path(), &prefix.0, REDIS, "30s", &a.url()).await;
    assert_eq!(status(&first.url()).await["routing"]["version"], 1);
    first.shutdown().await;
    let cache = std::fs::read_to_string(dir.path().join(routes::CACHE_FILE)).unwrap();
    assert!(cache.starts_with("# version: 1\n"), "{cache}");

    let closed = format!("redis://127.0.0.1:{}/0", free_port());
    let router = start(dir.path(), &prefix.0, &closed, "300ms", &a.url()).await;
    let url = router.url();
    let routing = status(&url).await["routing"].clone();
    assert_eq!(routing["version"], 1, "{routing}");
    assert!(
        routing["source"]
            .as_str()
            .unwrap()
            .contains(routes::CACHE_FILE),
        "{routing}"
    );
    assert_eq!(write(&url).await, 204);
    assert_eq!((a.write_count(), b.write_count()), (0, 1));
    // the outage goes on: the router keeps serving
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(write(&url).await, 204);
    assert_eq!(b.write_count(), 2);
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_document_is_refused_and_the_last_good_table_keeps_serving() {
    let prefix = Prefix::new();
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let dir = tempfile::tempdir().unwrap();
    let router = start(dir.path(), &prefix.0, REDIS, "300ms", &a.url()).await;
    let url = router.url();
    let_listeners_bind(&[&router]).await;
    routes::push(REDIS, AMQP, &prefix.0, &document("b", &b.url()), "test")
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || async {
            status(&url).await["routing"]["version"] == 1
        })
        .await
    );
    store(
        &prefix.0,
        "[[cluster]]\nname = \"main\"\nnodes = [{ name = \"x\", url = \"ftp://nowhere\" }]\n",
    )
    .await;
    let refused = wait_until(Duration::from_secs(3), || async {
        status(&url).await["routing"]["refused"] == 1
    })
    .await;
    let routing = status(&url).await["routing"].clone();
    assert!(refused, "{routing}");
    // the refused document is version 2; the table in force is still version 1's
    assert_eq!(routing["version"], 1);
    assert_eq!(write(&url).await, 204);
    assert_eq!((a.write_count(), b.write_count()), (0, 1));
    // refused once per version, not at every poll
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(status(&url).await["routing"]["refused"], 1);
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_pushes_under_load_fail_no_request_and_put_each_write_on_exactly_one_node() {
    let prefix = Prefix::new();
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let dir = tempfile::tempdir().unwrap();
    let router = start(dir.path(), &prefix.0, REDIS, "30s", &a.url()).await;
    let url = router.url();
    let_listeners_bind(&[&router]).await;
    let swaps_before = status(&url).await["routing"]["swaps"].as_u64().unwrap_or(0);
    let load = support::load::Load::start(&url, "d", 3);
    for push in 1..=100u64 {
        let (node, node_url) = if push % 2 == 1 {
            ("b", b.url())
        } else {
            ("a", a.url())
        };
        routes::push(REDIS, AMQP, &prefix.0, &document(node, &node_url), "test")
            .await
            .unwrap();
        let swapped = wait_until(Duration::from_secs(5), || async {
            status(&url).await["routing"]["swaps"].as_u64() == Some(swaps_before + push)
        })
        .await;
        assert!(
            swapped,
            "push {push} not applied: {}",
            status(&url).await["routing"]
        );
    }
    let report = load.stop().await;
    assert!(
        report.failures.is_empty(),
        "{:?}",
        &report.failures[..report.failures.len().min(5)]
    );
    let mut everywhere: Vec<String> = a
        .written_lines()
        .into_iter()
        .chain(b.written_lines())
        .collect();
    everywhere.sort();
    let mut acked = report.acked.clone();
    acked.sort();
    println!(
        "100 redis pushes under load: {} writes acknowledged",
        acked.len()
    );
    assert_eq!(
        everywhere, acked,
        "each acknowledged write is on exactly one node, nothing else is"
    );
}
