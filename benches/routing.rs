//! Routing lookups on a table of 20 `[[route]]` rules over three clusters:
//! exact names, prefixes, classes, measurement rules and a shard.
//!
//! One iteration is one lookup, so criterion's time is nanoseconds per
//! lookup; `mix` does the 8 lookups of [`MIX`] per iteration (elements/s).
//! The slowest cases are names that match no rule: every rule is tried.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use influxdb_router::config::Config;
use influxdb_router::monitor::Monitor;
use influxdb_router::routing::RoutingTable;

/// (database, measurement) pairs a busy router might see.
const MIX: [(&str, &str); 8] = [
    ("telegraf", "cpu"),
    ("telemetry_eu", "cpu_load"),
    ("metrics", "net"),
    ("big", "http_requests_total"),
    ("logs_abc", "syslog"),
    ("app7", "requests"),
    ("unrouted", "mem"),
    ("svc-eu-prod", "latency"),
];

fn config(dir: &str) -> Config {
    let mut text = format!(
        r#"
[buffer]
dir = {dir:?}
[routing]
default_cluster = "main"
[[cluster]]
name = "main"
nodes = [{{ name = "a", url = "http://127.0.0.1:1" }}]
[[cluster]]
name = "k8s"
nodes = [{{ name = "b", url = "http://127.0.0.1:2" }}]
[[cluster]]
name = "east"
nodes = [{{ name = "c", url = "http://127.0.0.1:3" }}]
[[route]]
database = "telegraf"
measurement = "cpu"
cluster = "east"
[[route]]
database = "telemetry*"
measurement = "cpu*"
cluster = "k8s"
[[route]]
database = "logs_[a-z][!0-9]?"
cluster = "east"
"#
    );
    for i in 0..12 {
        let cluster = ["main", "k8s", "east"][i % 3];
        let database = match i % 2 {
            0 => format!("app{i}"),
            _ => format!("team{i}_*"),
        };
        text += &format!("[[route]]\ndatabase = {database:?}\ncluster = {cluster:?}\n");
    }
    text += r#"
[[route]]
measurement = "*_tmp"
cluster = "main"
[[route]]
database = "big"
shard = ["main", "k8s", "east"]
[[route]]
database = "svc-??-prod"
cluster = "k8s"
[[route]]
database = "metrics"
measurement = "[a-m]*"
cluster = "k8s"
[[route]]
database = "metrics"
cluster = "east"
"#;
    Config::from_toml_str(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn bench_lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir.path().display().to_string());
    assert_eq!(config.routes.len(), 20);
    let table = RoutingTable::build(&config, 1, "bench", None, &Monitor::new(None)).unwrap();

    let mut group = c.benchmark_group("routing_20_rules");
    let cases = [
        ("cluster_index_for/first_rule", "telegraf", "cpu"),
        ("cluster_index_for/prefix_rule", "telemetry_eu", "cpu_load"),
        ("cluster_index_for/last_rule", "metrics", "net"),
        ("cluster_index_for/shard", "big", "http_requests_total"),
        ("cluster_index_for/no_rule", "unrouted", "mem"),
    ];
    for (name, db, measurement) in cases {
        group.bench_function(name, |b| {
            b.iter(|| table.cluster_index_for(black_box(db), black_box(measurement)))
        });
    }
    for (name, db) in [
        ("needs_measurement/database_rule", "logs_abc"),
        ("needs_measurement/last_rule", "metrics"),
        ("needs_measurement/no_rule", "unrouted"),
    ] {
        group.bench_function(name, |b| b.iter(|| table.needs_measurement(black_box(db))));
    }
    group.bench_function("cluster_for/no_rule", |b| {
        b.iter(|| table.cluster_for(black_box("unrouted")).name.len())
    });
    group.bench_function("clusters_for_db/metrics", |b| {
        b.iter(|| table.clusters_for_db(black_box("metrics")))
    });
    let per_db = table.rules_for_db("metrics");
    group.bench_function("rules_for_db/cluster_for", |b| {
        b.iter(|| per_db.cluster_for(black_box("net")))
    });
    group.throughput(Throughput::Elements(MIX.len() as u64));
    group.bench_function("mix/cluster_index_for", |b| {
        b.iter(|| {
            MIX.iter()
                .map(|(db, m)| table.cluster_index_for(black_box(db), black_box(m)))
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_lookups);
criterion_main!(benches);
