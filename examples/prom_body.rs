//! Writes one Prometheus remote write body, as Prometheus 2.x sends it (a
//! snappy block holding a protobuf `WriteRequest`), for the relay
//! benchmark (benches/relay.py): `samples` series of one sample each, like
//! a batch of Prometheus's own metrics (its default `max_samples_per_send`
//! is 500): 60 metric names, `instance` and `job` labels, and a `le`,
//! `quantile`, `handler` or `code` label on most.
//!
//! `cargo run --release --example prom_body -- FILE [samples]`

use influxdb_router::protocol::prom::messages::{LabelPair, Sample, TimeSeries, WriteRequest};
use influxdb_router::protocol::prom::snappy;
use prost::Message;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: prom_body FILE [samples]");
    let samples: usize = args.next().map_or(500, |n| n.parse().expect("samples"));
    let base_ms: i64 = 1_764_115_200_000;
    let extra = ["le", "quantile", "handler", "code", ""];
    let timeseries = (0..samples)
        .map(|i| {
            let metric = format!("prometheus_bench_metric_{}_total", i % 60);
            let mut labels = vec![
                LabelPair::new("__name__", metric),
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
                    value: (i as f64) * 1.5 + 0.25,
                    timestamp_ms: base_ms + (i / 60) as i64 * 15_000,
                }],
            }
        })
        .collect();
    let encoded = WriteRequest { timeseries }.encode_to_vec();
    let body = snappy::compress(&encoded);
    std::fs::write(&path, &body).expect("write the body");
    println!(
        "{samples} samples: {} bytes of protobuf, {} bytes compressed",
        encoded.len(),
        body.len()
    );
}
