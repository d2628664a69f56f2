//! Prometheus remote storage through the router, with a real Prometheus
//! server as the client (Debian package `prometheus`) and real `influxd`
//! nodes: what the nodes hold is compared with a reference `influxd` that
//! gets the same remote writes directly; remote reads go through the
//! router. Also the edge cases of InfluxDB's conversion, sent by hand, and
//! the router's own answers to bodies it must refuse.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use influxdb_router::config::Config;
use influxdb_router::protocol::prom::messages::{
    LabelMatcher, LabelPair, MatchType, Query, ReadRequest, ReadResponse, Sample, TimeSeries,
    WriteRequest,
};
use influxdb_router::protocol::prom::snappy;
use influxdb_router::server::{self, RunningRouter};
use prost::Message;
use serde_json::Value;
use support::prometheus::{Prometheus, RemoteStorage};
use support::router::RouterBuilder;
use support::{wait_until, FakeNode, Influxd};

/// How long data may take to arrive (scrapes every second, sends every 200 ms).
const EVENTUALLY: Duration = Duration::from_secs(30);

const DB: &str = "prom";

// ---------------------------------------------------------------------------
// With a real Prometheus
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn remote_writes_reach_both_nodes_as_influxd_stores_them_and_survive_a_node_outage() {
    let [n1, n2, reference] = start_influxd::<3>();
    for node in [&n1, &n2, &reference] {
        node.create_database(DB).await;
    }
    let queues = tempfile::tempdir().unwrap();
    let router = spawn_router(&format!(
        "[[cluster]]\nname = \"main\"\nnodes = [{{ name = \"n1\", url = \"{}\" }}, {{ name = \"n2\", url = \"{}\" }}]\n",
        n1.url(),
        n2.url()
    ), queues.path())
    .await;
    let url = router.url();
    let prometheus = Prometheus::start(&RemoteStorage {
        write: vec![
            format!("{url}/api/v1/prom/write?db={DB}"),
            format!("{}/api/v1/prom/write?db={DB}", reference.url()),
        ],
        read: vec![format!("{url}/api/v1/prom/read?db={DB}")],
    });
    for node in [&n1, &n2, &reference] {
        wait_for_up(node, 0, &prometheus).await;
    }

    // n2 is down for three scrapes: its share waits in its queue
    n2.stop();
    wait_for_health(&url, "n2", false).await;
    let down_at = last_up_ms(&reference).await.unwrap();
    wait_for_up(&reference, down_at + 3000, &prometheus).await;
    let held = node_status(&url, "n2").await["queue"].clone();
    assert!(held["records"].as_u64().unwrap_or(0) >= 1, "{held}");
    tokio::task::block_in_place(|| n2.start_again());
    let drained = wait_until(EVENTUALLY, || async {
        node_status(&url, "n2").await["queue"]["records"] == 0
    })
    .await;
    assert!(drained, "n2's queue: {}", node_status(&url, "n2").await);

    // everything scraped up to `cut` has been sent to both destinations
    // once a later scrape arrived (one shard: samples go out in order)
    let cut = last_up_ms(&reference).await.unwrap();
    for node in [&n1, &n2, &reference] {
        wait_for_up(node, cut + 2000, &prometheus).await;
    }
    let expected = dump(&reference, cut).await;
    let measurements = expected.as_array().map_or(0, Vec::len);
    assert!(
        measurements >= 20,
        "only {measurements} measurements: {expected}"
    );
    assert_same(&dump(&n1, cut).await, &expected, "n1");
    assert_same(&dump(&n2, cut).await, &expected, "n2");
    println!("{measurements} measurements identical on n1, n2 and the reference up to {cut} ms");

    // a range only remote read can answer: before Prometheus started
    let old = now_ms() - 2 * 3600 * 1000;
    let history = write_request(vec![series(
        &[("__name__", "history_metric"), ("job", "backfill")],
        &[(1.5, old), (2.5, old + 15_000)],
    )]);
    let answer = post_prom(&format!("{url}/api/v1/prom/write?db={DB}"), &history).await;
    assert_eq!(answer.0, 204, "{}", answer.1);
    let result = instant_query(&prometheus, "history_metric", old + 20_000).await;
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(result[0]["metric"]["job"], "backfill");
    assert_eq!(result[0]["value"][1], "2.5");
}

#[tokio::test(flavor = "multi_thread")]
async fn sharded_remote_writes_land_each_metric_on_its_owner_and_reads_merge() {
    let [c1, c2, reference] = start_influxd::<3>();
    for node in [&c1, &c2, &reference] {
        node.create_database(DB).await;
    }
    let queues = tempfile::tempdir().unwrap();
    let router = spawn_router(
        &format!(
            "[routing]\ndefault_cluster = \"c1\"\n\
             [[cluster]]\nname = \"c1\"\nnodes = [{{ name = \"n1\", url = \"{}\" }}]\n\
             [[cluster]]\nname = \"c2\"\nnodes = [{{ name = \"n2\", url = \"{}\" }}]\n\
             [[route]]\ndatabase = \"{DB}\"\nshard = [\"c1\", \"c2\"]\nshard_key = \"measurement\"\n",
            c1.url(),
            c2.url()
        ),
        queues.path(),
    )
    .await;
    let url = router.url();
    let owner = |measurement: &str| -> usize {
        router
            .shared()
            .routing
            .load()
            .cluster_index_for(DB, measurement)
    };
    let clusters = [&c1, &c2];
    let prometheus = Prometheus::start(&RemoteStorage {
        write: vec![
            format!("{url}/api/v1/prom/write?db={DB}"),
            format!("{}/api/v1/prom/write?db={DB}", reference.url()),
        ],
        read: vec![format!("{url}/api/v1/prom/read?db={DB}")],
    });
    let up_owner = clusters[owner("up")];
    wait_for_up(&reference, 0, &prometheus).await;
    let cut = last_up_ms(&reference).await.unwrap();
    wait_for_up(&reference, cut + 2000, &prometheus).await;
    wait_for_up(up_owner, cut + 2000, &prometheus).await;

    let names = measurement_names(&reference).await;
    let mut owned = [0, 0];
    for name in &names {
        let (home, other) = (owner(name), 1 - owner(name));
        owned[home] += 1;
        let q = format!("SELECT * FROM {} WHERE time <= {cut}ms", quote(name));
        let expected = select(&reference, &q).await;
        assert_same(&select(clusters[home], &q).await, &expected, name);
        let elsewhere = measurement_names(clusters[other]).await;
        assert!(
            !elsewhere.contains(name),
            "{name} is also on cluster {other}"
        );
    }
    assert!(
        owned[0] >= 5 && owned[1] >= 5,
        "measurements per cluster: {owned:?}"
    );
    println!("{owned:?} measurements on c1 and c2, each as on the reference");

    // old data on both clusters, read back through Prometheus and directly
    let old = now_ms() - 2 * 3600 * 1000;
    let (a, b) = two_names_owned_by_different_clusters(&owner);
    let history = write_request(vec![
        series(
            &[("__name__", &a), ("job", "h")],
            &[(1.0, old), (3.0, old + 2000)],
        ),
        series(&[("__name__", &b), ("job", "h")], &[(2.0, old + 1000)]),
    ]);
    for target in [url.as_str(), &reference.url()] {
        let answer = post_prom(&format!("{target}/api/v1/prom/write?db={DB}"), &history).await;
        assert_eq!(answer.0, 204, "{target}: {}", answer.1);
    }
    assert!(measurement_names(clusters[owner(&a)]).await.contains(&a));
    assert!(measurement_names(clusters[owner(&b)]).await.contains(&b));
    let result = instant_query(&prometheus, r#"{job="h"}"#, old + 2500).await;
    let mut got: Vec<String> = result
        .iter()
        .map(|r| r["metric"]["__name__"].as_str().unwrap_or("").to_string())
        .collect();
    got.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(got, want, "{result:?}");

    // the merged answer is what one server holding everything answers
    for matcher in [
        (MatchType::RegexMatch, "__name__", format!("{a}|{b}")),
        (MatchType::Equal, "job", "h".to_string()),
        (MatchType::Equal, "__name__", a.clone()),
    ] {
        let request = read_request(old - 1000, old + 10_000, matcher.clone());
        let through = read(&format!("{url}/api/v1/prom/read?db={DB}"), &request).await;
        let direct = read(
            &format!("{}/api/v1/prom/read?db={DB}", reference.url()),
            &request,
        )
        .await;
        assert_eq!(sorted(through), sorted(direct), "{matcher:?}");
    }
}

// ---------------------------------------------------------------------------
// InfluxDB's conversion, edge by edge
// ---------------------------------------------------------------------------

/// Requests that show every rule of InfluxDB 1.6.7's conversion (found by
/// sending them to a real influxd): what the router forwards must be stored
/// exactly so, through one cluster and through a split.
fn edge_cases(t: i64) -> Vec<WriteRequest> {
    vec![
        write_request(vec![
            series(
                &[("__name__", "plain"), ("job", "j"), ("a b", "c,d=e")],
                &[(1.5, t), (2.0, t + 1)],
            ),
            series(&[("job", "unnamed")], &[(3.0, t)]),
            series(&[("__name__", "nan")], &[(f64::NAN, t), (4.0, t + 1)]),
            series(&[("__name__", "empty_value"), ("e", "")], &[(6.0, t)]),
            series(
                &[("__name__", "first"), ("__name__", "second")],
                &[(8.0, t)],
            ),
            series(&[("__name__", "newline"), ("t", "a\nb")], &[(9.0, t)]),
            series(
                &[("__name__", "back\\slash"), ("t", "x\\"), ("k\\", "v")],
                &[(10.0, t)],
            ),
            series(&[("__name__", "escaped\\,comma c")], &[(10.5, t)]),
            series(&[("__name__", "negative_time")], &[(11.0, -5)]),
            series(&[("__name__", "wraps_to_zero")], &[(12.0, 1 << 62)]),
            series(
                &[("__name__", "extremes")],
                &[(1e300, t), (5e-324, t + 1), (-0.0, t + 2)],
            ),
            series(
                &[("z", "1"), ("__name__", "unsorted"), ("a", "2")],
                &[(16.0, t)],
            ),
            series(&[("__name__", "value_label"), ("value", "x")], &[(18.0, t)]),
            series(&[("__name__", "no_samples")], &[]),
        ]),
        // refused whole by influxd: nothing of it may be stored anywhere
        write_request(vec![
            series(&[("__name__", "before_inf")], &[(1.0, t)]),
            series(&[("__name__", "inf")], &[(f64::INFINITY, t)]),
        ]),
        write_request(vec![series(
            &[("__name__", "long_key"), ("t", &"y".repeat(70_000))],
            &[(1.0, t)],
        )]),
        write_request(vec![]),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nodes_store_exactly_what_influxd_stores_edge_cases_included() {
    let [c1, c2, reference] = start_influxd::<3>();
    for node in [&c1, &c2, &reference] {
        node.create_database("one").await;
        node.create_database("split").await;
    }
    let queues = tempfile::tempdir().unwrap();
    let router = spawn_router(
        &format!(
            "[routing]\ndefault_cluster = \"c1\"\n\
             [[cluster]]\nname = \"c1\"\nnodes = [{{ name = \"n1\", url = \"{}\" }}]\n\
             [[cluster]]\nname = \"c2\"\nnodes = [{{ name = \"n2\", url = \"{}\" }}]\n\
             [[route]]\ndatabase = \"split\"\nshard = [\"c1\", \"c2\"]\nshard_key = \"measurement\"\n",
            c1.url(),
            c2.url()
        ),
        queues.path(),
    )
    .await;
    let t = 1_700_000_000_123;
    for db in ["one", "split"] {
        for request in edge_cases(t) {
            let through = post_prom(
                &format!("{}/api/v1/prom/write?db={db}", router.url()),
                &request,
            )
            .await;
            let direct = post_prom(
                &format!("{}/api/v1/prom/write?db={db}", reference.url()),
                &request,
            )
            .await;
            assert_eq!(
                through.0, direct.0,
                "{db}: router {through:?}, influxd {direct:?}"
            );
            if direct.0 != 204 {
                let error =
                    |body: &str| serde_json::from_str::<Value>(body).unwrap()["error"].clone();
                assert_eq!(error(&through.1), error(&direct.1), "{db}");
            }
        }
    }
    let q = "SELECT * FROM /.*/";
    let series = "SHOW SERIES";
    // database "one": all of it on c1
    assert_same(
        &select_in(&c1, "one", q).await,
        &select_in(&reference, "one", q).await,
        "one",
    );
    assert_same(
        &select_in(&c1, "one", series).await,
        &select_in(&reference, "one", series).await,
        "one",
    );
    assert_eq!(select_in(&c2, "one", q).await, Value::Null);
    // database "split": each measurement on its owner, as on the reference
    let table = router.shared().routing.load();
    let names = measurement_names_in(&reference, "split").await;
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        let home = [&c1, &c2][table.cluster_index_for("split", &name)];
        let q = format!("SELECT * FROM {}", quote(&name));
        assert_same(
            &select_in(home, "split", &q).await,
            &select_in(&reference, "split", &q).await,
            &name,
        );
    }
}

// ---------------------------------------------------------------------------
// What the router refuses itself
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_bodies_get_400_and_oversized_ones_413_and_none_reaches_a_node() {
    let node = FakeNode::start();
    let router = RouterBuilder::new()
        .node("n", &node.url())
        .server("max_body_size", "65536")
        .start()
        .await;
    let url = format!("{}/api/v1/prom/write?db=d", router.url());
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"garbage".to_vec(), 400, "not a snappy-compressed body"),
        (Vec::new(), 400, "not a snappy-compressed body"),
        (
            snappy::compress(&[0x0a, 0x50, 1, 2, 3]),
            400,
            "not a valid Prometheus WriteRequest: timeseries 0: a field declares 80 bytes",
        ),
        (
            snappy::compress(&[0x08, 0x01]),
            400,
            "field timeseries has wire type 0",
        ),
        // 4 GiB declared by a 6-byte body
        (
            vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x00],
            413,
            "decompresses to 4294967295 bytes",
        ),
        // 1 MiB of zeros in a few dozen bytes: over the limit once decompressed
        (
            snappy::compress(&vec![0; 1 << 20]),
            413,
            "the limit is 65536 bytes",
        ),
        (
            snappy::compress(
                &write_request(vec![series(
                    &[("__name__", "m")],
                    &[(f64::NEG_INFINITY, 1)],
                )])
                .encode_to_vec(),
            ),
            400,
            "+/-Inf is an unsupported value for field value",
        ),
    ];
    for (body, status, message) in cases {
        let answer = post_prom(&url, &RawBody(body.clone())).await;
        assert_eq!(answer.0, status, "{body:02x?}: {}", answer.1);
        let error: Value = serde_json::from_str(&answer.1).unwrap();
        let text = error["error"].as_str().unwrap();
        assert!(text.contains(message), "{text:?} lacks {message:?}");
    }
    // a compressed body over the limit is refused before it is read whole
    let big = post_prom(&url, &RawBody(vec![0; 100_000])).await;
    assert_eq!(big.0, 413, "{}", big.1);
    let missing_db = post_prom(
        &format!("{}/api/v1/prom/write", router.url()),
        &write_request(vec![]),
    )
    .await;
    assert_eq!(
        missing_db,
        (400, "{\"error\":\"database is required\"}\n".to_string())
    );
    assert_eq!(node.requests_to("/api/v1/prom/write").len(), 0);
}

#[tokio::test]
async fn limits_count_a_remote_write_by_its_decompressed_size() {
    let node = FakeNode::start();
    let router = RouterBuilder::new()
        .node("n", &node.url())
        .limits("client_bytes", "\"256KiB/s\"")
        .start()
        .await;
    let url = format!("{}/api/v1/prom/write?db=d", router.url());
    // 1 MiB of protobuf in a few KB of snappy: over a 256 KiB/s budget
    let long = "x".repeat(1000);
    let many: Vec<TimeSeries> = (0..1100)
        .map(|i| series(&[("__name__", "m"), ("t", &long)], &[(1.0, i)]))
        .collect();
    let big = write_request(many);
    let decoded = big.encode_to_vec().len();
    assert!(big.bytes().len() < 64 << 10, "{} bytes", big.bytes().len());
    // the first body is taken from the full bucket and leaves it in debt
    let first = post_prom(&url, &big).await;
    assert_ne!(first.0, 429, "{}", first.1);
    let second = post_prom(&url, &big).await;
    assert_eq!(second.0, 429, "{}", second.1);
    let counted = format!("(this body: {decoded} bytes)");
    assert!(second.1.contains(&counted), "{} lacks {counted}", second.1);
    assert_eq!(node.requests_to("/api/v1/prom/write").len(), 1);
}

#[tokio::test]
async fn hostile_bodies_never_panic_or_allocate_what_they_declare() {
    // a sharded database, so that both writes and reads are decoded
    let (f1, f2) = (FakeNode::start(), FakeNode::start());
    let queues = tempfile::tempdir().unwrap();
    let router = spawn_router(
        &format!(
            "[routing]\ndefault_cluster = \"c1\"\n\
             [[cluster]]\nname = \"c1\"\nnodes = [{{ name = \"f1\", url = \"{}\" }}]\n\
             [[cluster]]\nname = \"c2\"\nnodes = [{{ name = \"f2\", url = \"{}\" }}]\n\
             [[route]]\ndatabase = \"d\"\nshard = [\"c1\", \"c2\"]\nshard_key = \"measurement\"\n",
            f1.url(),
            f2.url()
        ),
        queues.path(),
    )
    .await;
    let client = reqwest::Client::new();
    let base = write_request(vec![
        series(&[("__name__", "m"), ("job", "j")], &[(1.0, 1), (2.0, 2)]),
        series(&[("__name__", "n")], &[(3.0, 3)]),
    ])
    .encode_to_vec();
    let mut noise = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        noise
    };
    let mut statuses = std::collections::BTreeMap::new();
    for round in 0..400 {
        let body = match round % 4 {
            // damaged protobuf, validly compressed
            0 | 1 => {
                let mut bytes = base.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = next() as u8;
                }
                snappy::compress(&bytes)
            }
            // a protobuf field declaring 2^40 bytes or more
            2 => {
                let mut bytes = vec![0x0a];
                let mut len = next() | (1 << 40);
                while len >= 0x80 {
                    bytes.push(len as u8 | 0x80);
                    len >>= 7;
                }
                bytes.push(len as u8);
                snappy::compress(&bytes)
            }
            // raw noise, its first bytes read as a declared length
            _ => (0..1 + next() % 64).map(|_| next() as u8).collect(),
        };
        for path in ["write", "read"] {
            let response = client
                .post(format!("{}/api/v1/prom/{path}?db=d", router.url()))
                .body(body.clone())
                .send()
                .await
                .expect("the router answers every hostile body");
            *statuses
                .entry((path, response.status().as_u16()))
                .or_insert(0) += 1;
        }
    }
    println!("answers: {statuses:?}");
    // refused by the router (400, 413), or valid and forwarded to a fake
    // node that does not know the path (404)
    for ((path, status), count) in &statuses {
        assert!(
            [400, 404, 413].contains(status),
            "{path}: {count} × {status}"
        );
    }
    for path in ["write", "read"] {
        assert!(
            statuses.get(&(path, 400)).copied().unwrap_or(0) >= 100,
            "{statuses:?}"
        );
    }
    let forwarded: usize = [&f1, &f2]
        .iter()
        .map(|f| {
            f.requests_to("/api/v1/prom/write").len() + f.requests_to("/api/v1/prom/read").len()
        })
        .sum();
    let valid: usize = statuses
        .iter()
        .filter(|((_, s), _)| *s == 404)
        .map(|(_, n)| n)
        .sum();
    assert!(
        forwarded >= valid,
        "{forwarded} requests reached the nodes for {valid} valid bodies"
    );
    let ping = client
        .get(format!("{}/ping", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 204);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn start_influxd<const N: usize>() -> [Influxd; N] {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..N).map(|_| scope.spawn(Influxd::start)).collect();
        let nodes: Vec<Influxd> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        nodes.try_into().unwrap_or_else(|_| unreachable!())
    })
}

async fn spawn_router(clusters: &str, queues: &std::path::Path) -> RunningRouter {
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\n[health]\ninterval = \"100ms\"\n[buffer]\ndir = {:?}\n{clusters}",
        queues.display().to_string()
    );
    let config =
        Config::from_toml_str(&text, "prometheus.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    server::spawn(config, "test").await.unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| LabelPair::new(*n, *v)).collect(),
        samples: samples
            .iter()
            .map(|(value, timestamp_ms)| Sample {
                value: *value,
                timestamp_ms: *timestamp_ms,
            })
            .collect(),
    }
}

fn write_request(timeseries: Vec<TimeSeries>) -> WriteRequest {
    WriteRequest { timeseries }
}

fn read_request(
    start: i64,
    end: i64,
    (kind, name, value): (MatchType, &str, String),
) -> ReadRequest {
    ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![LabelMatcher {
                r#type: kind as i32,
                name: name.into(),
                value: value.into(),
            }],
        }],
    }
}

/// A body sent as it is (not a message to encode).
struct RawBody(Vec<u8>);

trait Body {
    fn bytes(&self) -> Vec<u8>;
}

impl Body for WriteRequest {
    fn bytes(&self) -> Vec<u8> {
        snappy::compress(&self.encode_to_vec())
    }
}

impl Body for RawBody {
    fn bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}

/// POSTs a remote write as Prometheus does: status and body text.
async fn post_prom(url: &str, body: &impl Body) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-encoding", "snappy")
        .header("content-type", "application/x-protobuf")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body.bytes())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A remote read, decoded.
async fn read(url: &str, request: &ReadRequest) -> ReadResponse {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-encoding", "snappy")
        .header("content-type", "application/x-protobuf")
        .body(snappy::compress(&request.encode_to_vec()))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.bytes().await.unwrap();
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    let decoded = snappy::decompress(&body, 64 << 20).unwrap();
    ReadResponse::decode(decoded.as_slice()).unwrap()
}

/// Series of every result sorted by labels (one server answers in storage order).
fn sorted(mut response: ReadResponse) -> ReadResponse {
    for result in &mut response.results {
        result.timeseries.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
    response
}

/// `GET /query` with `epoch=ms`: the JSON answer.
async fn query_json(node: &Influxd, db: &str, q: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/query", node.url()))
        .query(&[("db", db), ("q", q), ("epoch", "ms")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The series of the first result of `q` on `db` (`Null` without any).
async fn select_in(node: &Influxd, db: &str, q: &str) -> Value {
    let answer = query_json(node, db, q).await;
    assert!(answer["results"][0]["error"].is_null(), "{q}: {answer}");
    answer["results"][0]["series"].clone()
}

async fn select(node: &Influxd, q: &str) -> Value {
    select_in(node, DB, q).await
}

/// Every point of [`DB`] up to `cut` ms.
async fn dump(node: &Influxd, cut: i64) -> Value {
    select(node, &format!("SELECT * FROM /.*/ WHERE time <= {cut}ms")).await
}

async fn measurement_names_in(node: &Influxd, db: &str) -> Vec<String> {
    let series = select_in(node, db, "SHOW MEASUREMENTS").await;
    series[0]["values"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r[0].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

async fn measurement_names(node: &Influxd) -> Vec<String> {
    measurement_names_in(node, DB).await
}

/// The time of the newest `up` sample, in ms.
async fn last_up_ms(node: &Influxd) -> Option<i64> {
    let series = select(node, "SELECT last(value) FROM up").await;
    series[0]["values"][0][0].as_i64()
}

/// Waits until `node` holds an `up` sample newer than `after` ms.
async fn wait_for_up(node: &Influxd, after: i64, prometheus: &Prometheus) {
    let arrived = wait_until(EVENTUALLY, || async {
        last_up_ms(node).await.is_some_and(|t| t > after)
    })
    .await;
    assert!(
        arrived,
        "no `up` after {after} ms on {} (newest: {:?}); prometheus log:\n{}",
        node.url(),
        last_up_ms(node).await,
        prometheus.log()
    );
}

fn assert_same(got: &Value, expected: &Value, what: &str) {
    if got != expected {
        let (got, expected) = (got.to_string(), expected.to_string());
        let at = got
            .bytes()
            .zip(expected.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let from = at.saturating_sub(200);
        panic!(
            "{what} differs from the reference at byte {at}:\n got: …{}\nwant: …{}",
            &got[from..(at + 200).min(got.len())],
            &expected[from..(at + 200).min(expected.len())]
        );
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn node_status(url: &str, node: &str) -> Value {
    let status: Value = reqwest::get(format!("{url}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == node).cloned())
        .unwrap_or(Value::Null)
}

async fn wait_for_health(url: &str, node: &str, healthy: bool) {
    let want = if healthy { "healthy" } else { "unhealthy" };
    let ok = wait_until(Duration::from_secs(10), || async {
        node_status(url, node).await["health"] == want
    })
    .await;
    assert!(ok, "node {node} did not become {want}");
}

/// Prometheus's answer to an instant query at `at_ms`: its `result`.
async fn instant_query(prometheus: &Prometheus, query: &str, at_ms: i64) -> Vec<Value> {
    let answer: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prometheus.url()))
        .query(&[
            ("query", query),
            ("time", &format!("{:.3}", at_ms as f64 / 1000.0)),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "success", "{answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Two metric names the shard rule puts on different clusters.
fn two_names_owned_by_different_clusters(owner: &impl Fn(&str) -> usize) -> (String, String) {
    let names: Vec<String> = (0..64).map(|i| format!("history_{i}")).collect();
    let a = names
        .iter()
        .find(|n| owner(n) == 0)
        .expect("a name on c1")
        .clone();
    let b = names
        .iter()
        .find(|n| owner(n) == 1)
        .expect("a name on c2")
        .clone();
    (a, b)
}
