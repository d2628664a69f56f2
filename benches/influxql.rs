//! Split + classify throughput on a realistic mix of InfluxQL statements.
//!
//! * `parse/one_per_request`: each statement parsed on its own, as most
//!   `/query` requests carry one statement (bytes and statements per second).
//! * `parse/multi_statement`: the whole mix as one `;`-separated query.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use influxdb_router::protocol::influxql::{parse, split};

/// Grafana-style SELECTs, SHOW queries and administrative statements.
const MIX: &[&str] = &[
    r#"SELECT mean("usage_idle") FROM "telegraf"."autogen"."cpu" WHERE ("host" =~ /^(web-01|web-02|db-01)$/ AND "cpu" = 'cpu-total') AND time >= now() - 6h and time <= now() GROUP BY time(30s), "host" fill(null)"#,
    r#"SELECT non_negative_derivative(mean("bytes_recv"), 1s) * 8 FROM "net" WHERE ("host" =~ /^web-\d+$/ AND "interface" !~ /^(lo|docker.*)$/) AND time >= 1718000000000ms and time <= 1718021600000ms GROUP BY time(1m), "interface" fill(none)"#,
    r#"SELECT last("used_percent") AS "used", max("used") / 1073741824 AS "GiB" FROM "mem" WHERE "host" = 'db-01' AND time > now() - 1h GROUP BY time(10s) fill(previous)"#,
    r#"SELECT percentile("response_time", 95) FROM "http" WHERE "path" =~ /^\/api\/v1\/.*/ AND "status" <> '500' AND time > now() - 24h GROUP BY time(5m), "path" LIMIT 100"#,
    r#"SELECT count(distinct("user_id")) FROM "events" WHERE "event" = 'login; from ''mobile''' AND time > now() - 7d GROUP BY time(1d) tz('Europe/Zürich')"#,
    r#"SELECT "value" FROM "sensors" WHERE "room" = 'température' AND time > now() - 30m ORDER BY time DESC LIMIT 1"#,
    "SHOW DATABASES",
    r#"SHOW MEASUREMENTS ON "telegraf" WITH MEASUREMENT =~ /cpu.*/ LIMIT 100"#,
    r#"SHOW TAG VALUES ON "telegraf" FROM "cpu" WITH KEY = "host" WHERE "dc" =~ /^eu-/"#,
    r#"SHOW TAG KEYS ON "telegraf" FROM "disk""#,
    r#"SHOW FIELD KEYS ON "telegraf" FROM "mem""#,
    r#"SHOW RETENTION POLICIES ON "telegraf""#,
    "SHOW STATS",
    "SHOW QUERIES",
    r#"CREATE DATABASE "metrics_2024" WITH DURATION 30d REPLICATION 1 NAME "month""#,
    r#"CREATE CONTINUOUS QUERY "cq_1h" ON "telegraf" BEGIN SELECT mean("usage_idle") INTO "telegraf"."year"."cpu_1h" FROM "cpu" GROUP BY time(1h), * END"#,
    r#"DROP SERIES FROM "cpu" WHERE "host" = 'old-web-07'"#,
    "/* dashboard 42 */ DROP MEASUREMENT \"tmp_import\"",
];

fn bench_parse(c: &mut Criterion) {
    let bytes: usize = MIX.iter().map(|q| q.len()).sum();
    let statements = MIX.len() as u64;
    let joined = MIX.join(";\n");
    assert_eq!(split(&joined).len(), MIX.len());

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("one_per_request/bytes", |b| {
        b.iter(|| MIX.iter().map(|q| parse(black_box(q)).len()).sum::<usize>())
    });
    group.throughput(Throughput::Elements(statements));
    group.bench_function("one_per_request/statements", |b| {
        b.iter(|| MIX.iter().map(|q| parse(black_box(q)).len()).sum::<usize>())
    });
    group.throughput(Throughput::Bytes(joined.len() as u64));
    group.bench_function("multi_statement/bytes", |b| {
        b.iter(|| parse(black_box(&joined)).len())
    });
    group.throughput(Throughput::Elements(statements));
    group.bench_function("multi_statement/statements", |b| {
        b.iter(|| parse(black_box(&joined)).len())
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
