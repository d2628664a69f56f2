//! TLS on both sides: the router's HTTPS listener, and `https://` nodes
//! (a real `influxd` with `https-enabled`) verified against a cluster's
//! `ca_file`, or not at all with `insecure_skip_verify`. Certificates are
//! generated for each test by [`TestPki`].

mod support;

use std::time::Duration;

use influxdb_router::config::Config;
use influxdb_router::server::reload::{self, Applied};
use influxdb_router::server::{self, RunningRouter};
use serde_json::Value;
use support::influxd::HttpsFiles;
use support::router::RouterBuilder;
use support::tls::{HttpsClient, TestPki};
use support::{wait_until, Influxd};

const LINE: &str = "cpu,host=web1 usage=0.5 1700000000000000000\n";

/// TOML string for a path.
fn path_value(path: &std::path::Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// An `influxd` serving HTTPS with the test server certificate.
fn https_influxd(pki: &TestPki) -> Influxd {
    Influxd::start_https(HttpsFiles {
        cert: pki.server_cert(),
        key: pki.server_key(),
        ca: pki.ca_cert(),
    })
}

/// Starts the router `builder` describes with its queues in `queues`.
async fn spawn(builder: RouterBuilder, queues: &tempfile::TempDir) -> RunningRouter {
    let text = builder.buffer("dir", &path_value(queues.path())).toml();
    let config = Config::from_toml_str(&text, "test.toml")
        .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    server::spawn(config, "test")
        .await
        .unwrap_or_else(|e| panic!("router does not start: {e}"))
}

/// A router listening with the test certificate.
fn https_listener(pki: &TestPki) -> RouterBuilder {
    RouterBuilder::new()
        .server("tls_cert", &path_value(&pki.server_cert()))
        .server("tls_key", &path_value(&pki.server_key()))
}

fn queues() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("router-queues-")
        .tempdir()
        .expect("temp dir for queues")
}

/// The `usage` values of `cpu` in `db` on `node`, read straight from it.
async fn usage_on(node: &Influxd, db: &str) -> Value {
    let answer = node.query("SELECT usage FROM cpu", Some(db)).await;
    answer
        .pointer("/results/0/series/0/values")
        .cloned()
        .unwrap_or(Value::Null)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn https_listener_serves_ping_write_and_query_and_refuses_plain_http() {
    let pki = TestPki::generate();
    let node = Influxd::start();
    let queues = queues();
    let router = spawn(https_listener(&pki).node("a", &node.url()), &queues).await;
    let url = router.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let client = HttpsClient::trusting(&pki.ca_cert());

    let ping = client.get(&format!("{url}/ping")).await.unwrap();
    assert_eq!(ping.status, 204, "{}", ping.body);
    let created = client
        .query(&url, "CREATE DATABASE db", None)
        .await
        .unwrap();
    assert_eq!(created.status, 200, "{}", created.body);
    let written = client
        .post(&format!("{url}/write?db=db"), None, LINE)
        .await
        .unwrap();
    assert_eq!(written.status, 204, "{}", written.body);
    let read = client
        .query(&url, "SELECT usage FROM cpu", Some("db"))
        .await
        .unwrap();
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        json(&read.body).pointer("/results/0/series/0/values"),
        Some(&serde_json::json!([["2023-11-14T22:13:20Z", 0.5]])),
        "{}",
        read.body
    );
    assert_eq!(
        usage_on(&node, "db").await,
        serde_json::json!([["2023-11-14T22:13:20Z", 0.5]])
    );

    let plain = format!("http://{}/ping", router.addr());
    let answer = reqwest::Client::new().get(&plain).send().await;
    assert!(
        answer.is_err(),
        "plain HTTP to the HTTPS port got {answer:?}"
    );
    let strict = HttpsClient::trusting(&pki.other_ca_cert());
    let refused = strict.get(&format!("{url}/ping")).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // the listener still serves after the failed handshakes
    assert_eq!(
        client.get(&format!("{url}/ping")).await.unwrap().status,
        204
    );
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_node_verified_with_its_ca_file_gets_writes_and_answers_reads_end_to_end() {
    let pki = TestPki::generate();
    let node = https_influxd(&pki);
    assert!(node.url().starts_with("https://127.0.0.1:"));
    let queues = queues();
    let builder = https_listener(&pki)
        .node("a", &node.url())
        .cluster("ca_file", &path_value(&pki.ca_cert()));
    let router = spawn(builder, &queues).await;
    let url = router.url();
    let client = HttpsClient::trusting(&pki.ca_cert());

    let created = client
        .query(&url, "CREATE DATABASE db", None)
        .await
        .unwrap();
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(node.databases().await.contains(&"db".to_owned()));
    let written = client
        .post(&format!("{url}/write?db=db&consistency=all"), None, LINE)
        .await
        .unwrap();
    assert_eq!(written.status, 204, "{}", written.body);
    let expected = serde_json::json!([["2023-11-14T22:13:20Z", 0.5]]);
    assert_eq!(usage_on(&node, "db").await, expected);
    let read = client
        .query(&url, "SELECT usage FROM cpu", Some("db"))
        .await
        .unwrap();
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        json(&read.body).pointer("/results/0/series/0/values"),
        Some(&expected)
    );

    let health = client.get(&format!("{url}/health")).await.unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    let ping = client
        .get(&format!("{url}/ping?verbose=true"))
        .await
        .unwrap();
    assert!(
        ping.body.contains("1."),
        "the node's version comes through: {}",
        ping.body
    );
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_node_signed_by_another_ca_is_refused_with_the_certificate_problem() {
    let pki = TestPki::generate();
    let node = https_influxd(&pki);
    node.create_database("db").await;
    // checks at 0 s, 1 s and 2 s: the writes below happen while the node
    // still counts as healthy, so they really try the handshake
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .cluster("ca_file", &path_value(&pki.other_ca_cert()))
        .write("consistency", "\"any\"")
        .health("interval", "\"1s\"")
        .health("unhealthy_after", "3")
        .start()
        .await;

    let all = router.write("db=db&consistency=all", LINE).await;
    assert_eq!(all.status, 503, "{}", all.body);
    let error = all.error();
    assert!(
        error.contains("a: TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
    let any = router.write("db=db", LINE).await;
    assert_eq!(
        any.status, 204,
        "queued at the default consistency: {}",
        any.body
    );

    router.wait_for_health("a", false).await;
    let health = router.get("/health").await;
    assert_eq!(health.status, 503, "{}", health.body);
    let entry = &health.json()["clusters"][0]["nodes"][0];
    assert_eq!(entry["healthy"], false, "{}", health.body);
    let last_error = entry["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error
            .contains("ping failed: TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        "{}",
        health.body
    );
    let status = router.get("/status").await.json();
    let queued = status["nodes"][0]["queue"]["records"].as_u64();
    assert!(queued >= Some(2), "both writes wait in the queue: {status}");
    assert_eq!(
        usage_on(&node, "db").await,
        Value::Null,
        "nothing reached the node"
    );
    router.router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_skip_verify_accepts_a_node_certificate_from_any_ca() {
    let pki = TestPki::generate();
    let node = https_influxd(&pki);
    node.create_database("db").await;
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .cluster("ca_file", &path_value(&pki.other_ca_cert()))
        .cluster("insecure_skip_verify", "true")
        .start()
        .await;
    let written = router.write("db=db&consistency=all", LINE).await;
    assert_eq!(written.status, 204, "{}", written.body);
    assert_eq!(
        usage_on(&node, "db").await,
        serde_json::json!([["2023-11-14T22:13:20Z", 0.5]])
    );
    let read = router.query("SELECT usage FROM cpu", Some("db")).await;
    assert_eq!(read.status, 200, "{}", read.body);
    router.router.shutdown().await;
}

#[tokio::test]
async fn unreadable_tls_files_stop_the_start_with_the_file_named() {
    let pki = TestPki::generate();
    let missing = pki.dir().join("missing-cert.pem");
    let queues = queues();
    let builder = RouterBuilder::new()
        .node("a", "http://127.0.0.1:1")
        .server("tls_cert", &path_value(&missing))
        .server("tls_key", &path_value(&pki.server_key()));
    let text = builder.buffer("dir", &path_value(queues.path())).toml();
    let config = Config::from_toml_str(&text, "test.toml").unwrap();
    let error = server::spawn(config, "test").await.unwrap_err().to_string();
    assert!(
        error.contains(&format!("cannot read tls_cert {}", missing.display())),
        "{error}"
    );

    // a key file that holds a certificate, not a key
    let builder = RouterBuilder::new()
        .node("a", "http://127.0.0.1:1")
        .server("tls_cert", &path_value(&pki.server_cert()))
        .server("tls_key", &path_value(&pki.ca_cert()));
    let text = builder.buffer("dir", &path_value(queues.path())).toml();
    let config = Config::from_toml_str(&text, "test.toml").unwrap();
    let error = server::spawn(config, "test").await.unwrap_err().to_string();
    let expected = format!(
        "tls_key {}: expected a PEM private key",
        pki.ca_cert().display()
    );
    assert!(error.contains(&expected), "{error}");

    let missing_ca = pki.dir().join("missing-ca.pem");
    let builder = RouterBuilder::new()
        .node("a", "https://127.0.0.1:1")
        .cluster("ca_file", &path_value(&missing_ca));
    let text = builder.buffer("dir", &path_value(queues.path())).toml();
    let config = Config::from_toml_str(&text, "test.toml").unwrap();
    let error = server::spawn(config, "test").await.unwrap_err().to_string();
    assert!(
        error.contains("cluster \"main\"")
            && error.contains(&format!("cannot read ca_file {}", missing_ca.display())),
        "{error}"
    );
}

#[tokio::test]
async fn a_reload_with_an_unreadable_ca_file_is_refused_and_the_old_table_stays() {
    let pki = TestPki::generate();
    let queues = queues();
    let good = RouterBuilder::new()
        .node("a", "https://127.0.0.1:1")
        .cluster("ca_file", &path_value(&pki.ca_cert()))
        .buffer("dir", &path_value(queues.path()));
    let config = Config::from_toml_str(&good.toml(), "test.toml").unwrap();
    let router = server::spawn(config, "test").await.unwrap();
    let missing = pki.dir().join("gone.pem");
    let bad = RouterBuilder::new()
        .node("a", "https://127.0.0.1:2")
        .cluster("ca_file", &path_value(&missing))
        .buffer("dir", &path_value(queues.path()));
    let applied = reload::apply(router.shared(), &bad.toml(), "reload.toml");
    let Applied::Refused(problems) = applied else {
        panic!("the reload was not refused: {applied:?}");
    };
    let problems = problems.join("; ");
    assert!(
        problems.contains(&format!("cannot read ca_file {}", missing.display())),
        "{problems}"
    );
    let table = router.shared().routing.load();
    let urls: Vec<&str> = table.nodes().map(|n| n.base_url()).collect();
    assert_eq!(urls, ["https://127.0.0.1:1"], "the old table still serves");
    let state = router.shared().reloads.state();
    assert_eq!(state.refused, 1);
    router.shutdown().await;
}

/// Waits until `/status` of `router` (plain HTTP) has `want` for `pointer`.
async fn wait_status(router: &support::router::TestRouter, pointer: &str, want: Value) -> bool {
    wait_until(Duration::from_secs(10), || async {
        router.get("/status").await.json().pointer(pointer) == Some(&want)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_writes_reach_an_https_node_once_its_ca_file_is_fixed_by_a_reload() {
    let pki = TestPki::generate();
    let node = https_influxd(&pki);
    node.create_database("db").await;
    let queues = queues();
    let trusting = |ca: &std::path::Path| {
        RouterBuilder::new()
            .node("a", &node.url())
            .cluster("ca_file", &path_value(ca))
            .write("consistency", "\"any\"")
            .buffer("dir", &path_value(queues.path()))
    };
    let router = trusting(&pki.other_ca_cert()).start().await;
    router.wait_for_health("a", false).await;
    let answer = router.write("db=db", LINE).await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert!(wait_status(&router, "/nodes/0/queue/records", 1.into()).await);

    let fixed = trusting(&pki.ca_cert()).toml();
    let applied = reload::apply(router.router.shared(), &fixed, "fixed.toml");
    assert!(matches!(applied, Applied::Swapped(_)), "{applied:?}");
    router.wait_for_health("a", true).await;
    assert!(wait_status(&router, "/nodes/0/queue/records", 0.into()).await);
    assert_eq!(
        usage_on(&node, "db").await,
        serde_json::json!([["2023-11-14T22:13:20Z", 0.5]])
    );
    router.router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_and_stalled_handshakes_give_their_connection_back() {
    use tokio::io::AsyncReadExt;
    let pki = TestPki::generate();
    let queues = queues();
    let builder = https_listener(&pki)
        .server("max_connections", "1")
        .server("read_timeout", "\"500ms\"")
        .node("a", "http://127.0.0.1:1");
    let router = spawn(builder, &queues).await;
    let (url, client) = (router.url(), HttpsClient::trusting(&pki.ca_cert()));

    for _ in 0..3 {
        let plain = reqwest::Client::new()
            .get(format!("http://{}/ping", router.addr()))
            .send()
            .await;
        assert!(plain.is_err(), "{plain:?}");
    }
    assert_eq!(
        client.get(&format!("{url}/ping")).await.unwrap().status,
        204
    );

    // a client that connects and never starts the handshake holds the only
    // connection until read_timeout, then is cut off
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(router.addr()).await.unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "not closed: {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        client.get(&format!("{url}/ping")).await.unwrap().status,
        204
    );
    router.shutdown().await;
}
