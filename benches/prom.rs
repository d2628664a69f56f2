//! Prometheus remote write checking on one core: what the router does to
//! every `/api/v1/prom/write` body before it forwards it.
//!
//! The body is a `WriteRequest` of 500 single-sample series (Prometheus's
//! default `max_samples_per_send`), shaped like Prometheus's own metrics
//! (the same as `examples/prom_body.rs`): `decompress` (the snappy block),
//! `scan` (check every field, InfluxDB's whole-request rules),
//! `decompress_and_scan` (all a body for a database without measurement
//! rules costs), `prost_decode` (for comparison: decoding into structs,
//! which the router does not do), and `split` (by metric name over two clusters, each part
//! compressed again: a sharded database).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use influxdb_router::protocol::prom::messages::{LabelPair, Sample, TimeSeries, WriteRequest};
use influxdb_router::protocol::prom::{snappy, write};
use prost::Message;

const SAMPLES: usize = 500;

fn request() -> Vec<u8> {
    let extra = ["le", "quantile", "handler", "code", ""];
    let timeseries = (0..SAMPLES)
        .map(|i| {
            let mut labels = vec![
                LabelPair::new(
                    "__name__",
                    format!("prometheus_bench_metric_{}_total", i % 60),
                ),
                LabelPair::new("instance", "127.0.0.1:9090"),
                LabelPair::new("job", "prometheus"),
            ];
            let key = extra[i % extra.len()];
            if !key.is_empty() {
                labels.push(LabelPair::new(key, format!("{}", (i / 60) % 40)));
            }
            labels.sort();
            TimeSeries {
                labels,
                samples: vec![Sample {
                    value: i as f64 * 1.5 + 0.25,
                    timestamp_ms: 1_764_115_200_000 + (i / 60) as i64 * 15_000,
                }],
            }
        })
        .collect();
    WriteRequest { timeseries }.encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let decoded = request();
    let compressed = snappy::compress(&decoded);
    println!(
        "{SAMPLES} samples: {} bytes of protobuf, {} compressed",
        decoded.len(),
        compressed.len()
    );
    let mut group = c.benchmark_group("prom_write");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.bench_function("decompress", |b| {
        b.iter(|| snappy::decompress(black_box(&compressed), 64 << 20).unwrap())
    });
    group.bench_function("scan", |b| {
        b.iter(|| write::scan(black_box(&decoded), |_, _| {}).unwrap())
    });
    group.bench_function("prost_decode", |b| {
        b.iter(|| WriteRequest::decode(black_box(decoded.as_slice())).unwrap())
    });
    group.bench_function("decompress_and_scan", |b| {
        b.iter(|| {
            let decoded = snappy::decompress(black_box(&compressed), 64 << 20).unwrap();
            write::scan(&decoded, |_, _| {}).unwrap()
        })
    });
    group.bench_function("split", |b| {
        b.iter(|| {
            let decoded = snappy::decompress(black_box(&compressed), 64 << 20).unwrap();
            let parts = write::split(&decoded, |name| name.len() % 2).unwrap();
            parts
                .iter()
                .map(|(_, part)| snappy::compress(part).len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
