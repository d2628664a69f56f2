//! What the metrics cost one write request on the hot path (one core).
//!
//! * `write_request`: everything counted for a small uncompressed write to a
//!   cluster of two nodes: the answer (status class and latency), body bytes
//!   and lines (a 10-line, ~1 KB body), and per node one request (kind,
//!   bytes, latency, failure).
//!
//! Throughput is in requests (elements) per second.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use influxdb_router::monitor::http::count_lines;
use influxdb_router::monitor::{Endpoint, Monitor};
use influxdb_router::node::{Metrics, RequestKind};

fn bench_metrics(c: &mut Criterion) {
    let monitor = Monitor::new(None);
    let nodes = [monitor.node("main", "a"), monitor.node("main", "b")];
    let body: String = (0..10)
        .map(|i| {
            format!("cpu,host=web01,cpu=cpu{i} user=1.5,system=0.5,idle=98.0 1718000000000000000\n")
        })
        .collect();
    let chunks = [Bytes::from(body)];
    let status = http::StatusCode::NO_CONTENT;
    eprintln!(
        "write_request: a {}-byte, 10-line body to 2 nodes",
        chunks[0].len()
    );

    let mut group = c.benchmark_group("metrics");
    group.throughput(Throughput::Elements(1));
    group.bench_function("write_request", |b| {
        b.iter(|| {
            let http = &monitor.http;
            http.received(Endpoint::Write, chunks[0].len() as u64);
            http.write_lines_counted(count_lines(black_box(&chunks)));
            for node in &nodes {
                node.request(RequestKind::Write, 1000, Duration::from_micros(300), false);
            }
            http.answered(Endpoint::Write, status, Duration::from_micros(400));
        })
    });
    group.finish();
}

criterion_group!(benches, bench_metrics);
criterion_main!(benches);
