//! The relay role: the binary run with `examples/relay.toml` (its port,
//! queue directory and InfluxDB address swapped for the test's) in front of
//! a real `influxd`, taking influxdb-relay's `curl … :9096/write` as they
//! are, keeping writes in its queue while InfluxDB is down, and serving as
//! a node of a router (`examples/router-over-relays.toml`).

mod support;

use std::path::Path;
use std::time::Duration;

use support::router_process::{RouterProcess, BIND};
use support::{wait_until, Influxd};

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `examples/relay.toml` pointed at `influxd`, queueing under `queues`.
fn relay_config(influxd: &Influxd, queues: &Path) -> String {
    let text = example("relay.toml");
    for expected in [
        "0.0.0.0:9096",
        "/var/lib/influxdb-relay",
        "http://127.0.0.1:8086",
    ] {
        assert!(
            text.contains(expected),
            "examples/relay.toml no longer has {expected}"
        );
    }
    text.replace("0.0.0.0:9096", BIND)
        .replace("/var/lib/influxdb-relay", &queues.display().to_string())
        .replace("http://127.0.0.1:8086", &influxd.url())
}

/// influxdb-relay's README write, as curl sends it.
async fn relay_style_write(url: &str, line: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/write?db=mydb"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(line.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn count(influxd: &Influxd) -> u64 {
    let answer = influxd
        .query("SELECT count(value) FROM cpu_load_short", Some("mydb"))
        .await;
    answer["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_example_takes_relay_writes_and_queues_while_influxdb_is_down() {
    let influxd = Influxd::start();
    influxd.create_database("mydb").await;
    let queues = tempfile::tempdir().unwrap();
    let relay = RouterProcess::start(&relay_config(&influxd, queues.path()));
    let url = relay.url();

    let status = relay_style_write(
        &url,
        "cpu_load_short,host=server01,region=us-west value=0.64 1434055562000000000",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(count(&influxd).await, 1);
    // queries pass through to the local InfluxDB
    let answer: serde_json::Value = reqwest::get(format!(
        "{url}/query?db=mydb&q=SELECT%20value%20FROM%20cpu_load_short"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(answer["results"][0]["series"][0]["values"][0][1], 0.64);

    // InfluxDB restarts: the relay keeps acknowledging into its queue
    influxd.stop();
    for i in 2..=4 {
        let time = 1_434_055_562_000_000_000u64 + i * 1_000_000_000;
        let line = format!("cpu_load_short,host=server01,region=us-west value={i} {time}");
        assert_eq!(relay_style_write(&url, &line).await, 204);
    }
    influxd.start_again();
    let replayed = wait_until(Duration::from_secs(20), || async {
        count(&influxd).await == 4
    })
    .await;
    assert!(
        replayed,
        "after the restart InfluxDB holds {} of 4 points",
        count(&influxd).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_router_replicates_to_relays() {
    let (first, second) = (Influxd::start(), Influxd::start());
    for node in [&first, &second] {
        node.create_database("mydb").await;
    }
    let (q1, q2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let relay1 = RouterProcess::start(&relay_config(&first, q1.path()));
    let relay2 = RouterProcess::start(&relay_config(&second, q2.path()));
    let router_queues = tempfile::tempdir().unwrap();
    let text = example("router-over-relays.toml");
    assert!(text.contains("http://10.0.0.11:9096") && text.contains("http://10.0.0.12:9096"));
    let router = RouterProcess::start(
        &text
            .replace("0.0.0.0:5096", BIND)
            .replace(
                "/var/lib/influxdb-router",
                &router_queues.path().display().to_string(),
            )
            .replace("http://10.0.0.11:9096", &relay1.url())
            .replace("http://10.0.0.12:9096", &relay2.url()),
    );
    let status = relay_style_write(
        &router.url(),
        "cpu_load_short,host=server01,region=us-west value=0.64 1434055562000000000",
    )
    .await;
    assert_eq!(status, 204);
    let everywhere = wait_until(Duration::from_secs(10), || async {
        count(&first).await == 1 && count(&second).await == 1
    })
    .await;
    assert!(
        everywhere,
        "{} and {}",
        count(&first).await,
        count(&second).await
    );
}
