//! Data sharded across two clusters of real `influxd` nodes: every
//! measurement lands on exactly one cluster, and reads through the router
//! answer as one server holding all the data would (checked against a
//! reference `influxd` that got every point directly).

mod support;

use std::time::Duration;

use influxdb_router::config::Config;
use influxdb_router::server::{self, RunningRouter};
use serde_json::Value;
use support::Influxd;

struct Setup {
    c1: Influxd,
    c2: Influxd,
    reference: Influxd,
    router: RunningRouter,
    _queues: tempfile::TempDir,
}

async fn setup() -> Setup {
    let (c1, c2, reference) = (Influxd::start(), Influxd::start(), Influxd::start());
    let queues = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[server]
bind = "127.0.0.1:0"
[health]
interval = "100ms"
[buffer]
dir = {dir:?}
[routing]
default_cluster = "c1"
[[cluster]]
name = "c1"
nodes = [{{ name = "n1", url = "{c1}" }}]
[[cluster]]
name = "c2"
nodes = [{{ name = "n2", url = "{c2}" }}]
[[route]]
database = "metrics"
measurement = "cpu*"
cluster = "c2"
[[route]]
database = "sharded"
shard = ["c1", "c2"]
shard_key = "measurement"
"#,
        dir = queues.path().display().to_string(),
        c1 = c1.url(),
        c2 = c2.url(),
    );
    let config = Config::from_toml_str(&text, "sharding.toml").unwrap_or_else(|e| panic!("{e}"));
    let router = server::spawn(config, "test").await.unwrap();
    Setup {
        c1,
        c2,
        reference,
        router,
        _queues: queues,
    }
}

async fn post(url: &str, body: String) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn query(base: &str, q: &str, db: &str) -> Value {
    let request = reqwest::Client::new().get(format!("{base}/query")).query(&[
        ("q", q),
        ("db", db),
        ("epoch", "ns"),
    ]);
    request.send().await.unwrap().json().await.unwrap()
}

/// `CREATE DATABASE` through the router, asserting it was applied.
async fn create_database(router: &str, db: &str) {
    let url = format!("{router}/query?q=CREATE+DATABASE+{db}");
    assert_eq!(post(&url, String::new()).await.0, 200);
}

fn measurements(answer: &Value) -> Vec<String> {
    let rows = answer
        .pointer("/results/0/series/0/values")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    rows.iter()
        .filter_map(|r| r[0].as_str().map(str::to_string))
        .collect()
}

fn body(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "m{i},host=h{} value={i}i,ratio={}.5 {}\n",
                i % 3,
                i,
                1_700_000_000_000_000_000u64 + i as u64
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_measurement_lands_on_exactly_one_cluster_and_reads_answer_as_one_server() {
    let s = setup().await;
    let router = s.router.url();
    create_database(&router, "sharded").await;
    s.reference.create_database("sharded").await;
    let lines = body(40);
    let (status, text) = post(&format!("{router}/write?db=sharded"), lines.clone()).await;
    assert_eq!(status, 204, "{text}");
    s.reference.write("sharded", &lines).await;

    let on_c1 = measurements(&query(&s.c1.url(), "SHOW MEASUREMENTS", "sharded").await);
    let on_c2 = measurements(&query(&s.c2.url(), "SHOW MEASUREMENTS", "sharded").await);
    assert!(
        !on_c1.is_empty() && !on_c2.is_empty(),
        "both clusters hold some: {on_c1:?} {on_c2:?}"
    );
    assert!(
        on_c1.iter().all(|m| !on_c2.contains(m)),
        "no measurement on both: {on_c1:?} {on_c2:?}"
    );
    assert_eq!(on_c1.len() + on_c2.len(), 40);

    for q in [
        "SHOW MEASUREMENTS",
        "SHOW FIELD KEYS",
        "SHOW TAG KEYS",
        "SELECT * FROM m7",
        "SELECT * FROM m3, m4 GROUP BY host",
        "SELECT count(value) FROM /^m1/",
        "SHOW MEASUREMENTS LIMIT 5 OFFSET 3",
    ] {
        let through = query(&router, q, "sharded").await;
        let direct = query(&s.reference.url(), q, "sharded").await;
        assert_eq!(through, direct, "{q}");
    }

    // an admin statement about one measurement goes to the cluster holding it
    let drop = format!("{router}/query?db=sharded&q=DROP+MEASUREMENT+m7");
    let (status, text) = post(&drop, String::new()).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("error"), "{text}");
    let left = measurements(&query(&router, "SHOW MEASUREMENTS", "sharded").await);
    assert_eq!(left.len(), 39);
    assert!(!left.contains(&"m7".to_string()), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_measurement_rule_sends_matching_measurements_to_its_cluster_and_the_rest_to_the_default()
{
    let s = setup().await;
    let router = s.router.url();
    create_database(&router, "metrics").await;
    let lines = "cpu_load v=1 1\nmem v=2 2\ncpu v=3 3\ndisk v=4 4\n".to_string();
    assert_eq!(
        post(&format!("{router}/write?db=metrics"), lines).await.0,
        204
    );
    assert_eq!(
        measurements(&query(&s.c2.url(), "SHOW MEASUREMENTS", "metrics").await),
        vec!["cpu", "cpu_load"]
    );
    assert_eq!(
        measurements(&query(&s.c1.url(), "SHOW MEASUREMENTS", "metrics").await),
        vec!["disk", "mem"]
    );
    let cpu = query(&router, "SELECT v FROM cpu", "metrics").await;
    assert_eq!(
        cpu["results"][0]["series"][0]["values"],
        serde_json::json!([[3, 3]])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_with_a_bad_line_is_refused_whole_naming_the_line() {
    let s = setup().await;
    let router = s.router.url();
    create_database(&router, "metrics").await;
    let (status, text) = post(
        &format!("{router}/write?db=metrics"),
        "cpu v=1 1\n\nmem\n".to_string(),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("line 3"), "{text}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for node in [&s.c1, &s.c2] {
        assert!(measurements(&query(&node.url(), "SHOW MEASUREMENTS", "metrics").await).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_body_that_arrives_in_many_chunks_is_split_line_for_line() {
    let s = setup().await;
    let router = s.router.url();
    create_database(&router, "metrics").await;
    // About 1.2 MB: the router reads it in chunks of at most 64 KiB, so
    // chunk boundaries cut lines, some of them inside multi-line strings.
    let mut lines = String::from("# alternating clusters\n");
    for i in 0..20_000u64 {
        let m = if i % 3 == 0 { "mem" } else { "cpu" };
        let host = i % 5;
        match i % 7 {
            0 => lines.push_str(&format!(
                "{m},host=h{host} v={i}i,msg=\"line one \\\"q\\\"\nline two, {i}\" {i}\n"
            )),
            _ => lines.push_str(&format!(
                "{m},host=h{host} v={i}i,pad=\"{}\" {i}\n",
                "x".repeat((i % 50) as usize)
            )),
        }
    }
    assert!(lines.len() > 1 << 20);
    let (status, text) = post(&format!("{router}/write?db=metrics"), lines).await;
    assert_eq!(status, 204, "{text}");
    let count = |url: String, m: &'static str| async move {
        let q = format!("SELECT count(v) FROM {m}");
        query(&url, &q, "metrics").await["results"][0]["series"][0]["values"][0][1].clone()
    };
    assert_eq!(count(s.c2.url(), "cpu").await, 13_333);
    assert_eq!(count(s.c1.url(), "mem").await, 6_667);
    assert_eq!(
        measurements(&query(&s.c2.url(), "SHOW MEASUREMENTS", "metrics").await),
        vec!["cpu"]
    );
    assert_eq!(
        measurements(&query(&s.c1.url(), "SHOW MEASUREMENTS", "metrics").await),
        vec!["mem"]
    );
    let msg = query(&router, "SELECT msg FROM cpu WHERE time = 7", "metrics").await;
    assert_eq!(
        msg["results"][0]["series"][0]["values"],
        serde_json::json!([[7, "line one \"q\"\nline two, 7"]])
    );
}
