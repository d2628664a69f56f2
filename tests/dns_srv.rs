//! DNS SRV discovery against a real DNS server: `dnsmasq` on a free
//! loopback port serves the SRV records of a cluster, and the router follows
//! them as they are added and removed; when the server goes away, the last
//! node list stays.
//!
//! `dnsmasq` comes from Debian's `dnsmasq-base` package
//! (`apt-get install -y dnsmasq-base`; `./scripts/test.sh` installs it).

mod support;

use std::path::Path;
use std::time::Duration;

use influxdb_router::server;
use serde_json::Value;
use support::dnsmasq::{dnsmasq_binary, Dnsmasq, RECORD};
use support::{free_port, wait_until, FakeNode};

fn config(queues: &Path, dns_port: u16, static_port: u16) -> String {
    format!(
        r#"[server]
bind = "127.0.0.1:0"
[health]
interval = "100ms"
[buffer]
dir = {queues:?}
[routing]
default_cluster = "dns"
dns_servers = ["127.0.0.1:{dns_port}"]
[[cluster]]
name = "static"
nodes = [{{ name = "s", url = "http://127.0.0.1:{static_port}" }}]
[[cluster]]
name = "dns"
srv = "{RECORD}"
srv_interval = "200ms"
"#,
        queues = queues.display().to_string()
    )
}

async fn status(url: &str) -> Value {
    reqwest::get(format!("{url}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Names of the nodes of cluster `dns` in `/status`, sorted.
async fn dns_nodes(url: &str) -> Vec<String> {
    let status = status(url).await;
    let mut names: Vec<String> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["cluster"] == "dns")
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn wait_for_nodes(url: &str, expected: &[String]) {
    let reached = wait_until(Duration::from_secs(10), || async {
        dns_nodes(url).await == expected
    })
    .await;
    assert!(
        reached,
        "expected dns nodes {expected:?}, /status says {}",
        status(url).await
    );
}

async fn write(url: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{url}/write?db=d"))
        .body("m v=1 1\n")
        .send()
        .await
        .unwrap();
    let code = response.status().as_u16();
    (code, response.text().await.unwrap_or_default())
}

fn name(port: u16) -> String {
    format!("dns-localhost-{port}")
}

#[tokio::test(flavor = "multi_thread")]
async fn srv_records_decide_the_nodes_of_a_cluster() {
    let binary = dnsmasq_binary(); // fails loudly when missing
    assert!(binary.is_file());
    let (a, b, other) = (FakeNode::start(), FakeNode::start(), FakeNode::start());
    let dns_port = free_port();
    let mut dns = Dnsmasq::start(dns_port, &[a.port()]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.toml");
    std::fs::write(
        &path,
        config(&dir.path().join("queues"), dns_port, other.port()),
    )
    .unwrap();
    let router = server::spawn_watching(&path).await.unwrap();
    let url = router.url();

    // one record: that node, and writes reach it
    wait_for_nodes(&url, &[name(a.port())]).await;
    assert_eq!(write(&url).await.0, 204);
    assert_eq!((a.write_count(), b.write_count()), (1, 0));

    // a config reload that keeps the cluster's srv keeps the discovered nodes
    let before = status(&url).await["routing"]["version"].as_u64().unwrap();
    let edited = config(&dir.path().join("queues"), dns_port, other.port())
        .replace("srv_interval = \"200ms\"", "srv_interval = \"250ms\"");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, edited).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let reloaded = wait_until(Duration::from_secs(10), || async {
        status(&url).await["routing"]["version"].as_u64() > Some(before)
    })
    .await;
    assert!(
        reloaded,
        "the edited file was not loaded: {}",
        status(&url).await
    );
    assert_eq!(dns_nodes(&url).await, vec![name(a.port())]);
    assert_eq!(write(&url).await.0, 204);
    assert_eq!((a.write_count(), b.write_count()), (2, 0));

    // a second record: both get writes
    dns.restart(&[a.port(), b.port()]);
    let both = {
        let mut both = vec![name(a.port()), name(b.port())];
        both.sort();
        both
    };
    wait_for_nodes(&url, &both).await;
    assert_eq!(write(&url).await.0, 204);
    let reached = wait_until(Duration::from_secs(5), || async {
        a.write_count() == 3 && b.write_count() == 1
    })
    .await;
    assert!(
        reached,
        "writes: a {}, b {}",
        a.write_count(),
        b.write_count()
    );

    // the first record removed: only the second
    dns.restart(&[b.port()]);
    wait_for_nodes(&url, &[name(b.port())]).await;
    assert_eq!(write(&url).await.0, 204);
    assert_eq!((a.write_count(), b.write_count()), (3, 2));

    // the DNS server gone: the last list stays
    dns.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(dns_nodes(&url).await, vec![name(b.port())]);
    assert_eq!(write(&url).await.0, 204);
    assert_eq!((a.write_count(), b.write_count()), (3, 3));
    assert_eq!(other.write_count(), 0, "the static cluster got a write");
    router.shutdown().await;
}

/// SRV targets named only in the configured DNS server are resolved through
/// it (the system resolver knows nothing of `*.dnsonly.test`), an address
/// change moves the traffic within an interval, and a target that does not
/// resolve is left out and counted while the rest of the cluster serves.
#[tokio::test(flavor = "multi_thread")]
async fn srv_targets_resolve_through_the_configured_server_and_follow_address_changes() {
    let first = FakeNode::start();
    let port = first.port();
    // the same port on another loopback address
    let second = FakeNode::start_on(std::net::Ipv4Addr::new(127, 0, 0, 2), port);
    let host = "influx-0.dnsonly.test";
    assert!(
        std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).is_err(),
        "{host} must not resolve through the system resolver for this test to mean anything"
    );
    let records = |ip: &str| {
        vec![
            format!("--srv-host={RECORD},{host},{port},0,0"),
            format!("--srv-host={RECORD},ghost.dnsonly.test,{port},0,0"),
            format!("--host-record={host},{ip}"),
        ]
    };
    let other = FakeNode::start();
    let dns_port = free_port();
    let mut dns = Dnsmasq::start(dns_port, &[]);
    dns.restart_with(&records("127.0.0.1"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.toml");
    std::fs::write(
        &path,
        config(&dir.path().join("queues"), dns_port, other.port()),
    )
    .unwrap();
    let router = server::spawn_watching(&path).await.unwrap();
    let url = router.url();

    let node = format!("dns-{host}-{port}");
    wait_for_nodes(&url, std::slice::from_ref(&node)).await;
    assert_eq!(write(&url).await.0, 204);
    assert_eq!((first.write_count(), second.write_count()), (1, 0));
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("influxdb_router_srv_unresolved_targets{cluster=\"dns\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("srv"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // the target's address changes: traffic follows after one refresh
    dns.restart_with(&records("127.0.0.2"));
    let moved = wait_until(Duration::from_secs(5), || async {
        write(&url).await.0 == 204 && second.write_count() > 0
    })
    .await;
    assert!(
        moved,
        "writes never reached the new address: {}",
        status(&url).await
    );
    let at_first = first.write_count();
    assert_eq!(write(&url).await.0, 204);
    assert_eq!(
        first.write_count(),
        at_first,
        "a write still went to the old address"
    );
    assert_eq!(dns_nodes(&url).await, vec![node]);
    assert_eq!(other.write_count(), 0);
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_waiting_for_its_first_lookup_answers_503() {
    // a DNS server that has no record of the name: the cluster stays empty
    let other = FakeNode::start();
    let dns_port = free_port();
    let _dns = Dnsmasq::start(dns_port, &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.toml");
    std::fs::write(
        &path,
        config(&dir.path().join("queues"), dns_port, other.port()),
    )
    .unwrap();
    let router = server::spawn_watching(&path).await.unwrap();
    let url = router.url();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(dns_nodes(&url).await.is_empty());
    let (code, body) = write(&url).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("cluster \\\"dns\\\" has no write-enabled node"),
        "{body}"
    );
    let query = reqwest::get(format!("{url}/query?db=d&q=SELECT%20*%20FROM%20m"))
        .await
        .unwrap();
    assert_eq!(query.status().as_u16(), 503);
    let body = query.text().await.unwrap();
    assert!(body.contains("has no read-enabled node"), "{body}");
    router.shutdown().await;
}
