//! What `[limits]` cost one request on the hot path (one core), with every
//! limit on and set so high that nothing is refused:
//!
//! * `write_one_client`: a write as `server::handle` and `server::write`
//!   take it: `client_requests`, the user read from `u`/`p` and hashed,
//!   then `client_bytes`, `user_bytes` and `database_bytes` (second glob)
//!   for a 517,772-byte body (the 5,000-line batch of benches/relay.sh);
//! * `write_4096_clients`: the same from 4,096 client addresses in turn,
//!   so the per-address maps hold thousands of buckets;
//! * `query_permit`: `client_requests` and a `client_queries` permit taken
//!   and given back.
//!
//! With `[limits]` off none of this runs: the router holds no limiter and
//! checks one `Option`. Throughput is in requests (elements) per second.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use influxdb_router::config::Config;
use influxdb_router::monitor::Endpoint;
use influxdb_router::server::limits::identity::Claimed;
use influxdb_router::server::limits::{Limiter, Sender};

const BODY: u64 = 517_772;

fn limiter() -> Limiter {
    let text = r#"
[limits]
client_requests = "1000000000/s"
client_bytes = "1TiB/s"
user_bytes = "1TiB/s"
database_bytes = { "telemetry*" = "1TiB/s", "bench*" = "1TiB/s" }
client_queries = 1000000
[[cluster]]
name = "main"
nodes = [{ name = "a", url = "http://127.0.0.1:8086" }]
"#;
    let config = Config::from_toml_str(text, "bench").expect("valid");
    Limiter::new(&config.limits).expect("limits on")
}

fn write(limiter: &Limiter, client: IpAddr, headers: &http::HeaderMap) {
    let permit = limiter.admit(client, Endpoint::Write).expect("admitted");
    let user = Claimed::of(Some("bench"), Some("secret"), headers);
    let sender = Sender {
        client: Some(client),
        user: user.as_ref(),
        database: "bench",
    };
    limiter.take_bytes(sender, BODY).expect("taken");
    black_box(permit);
}

fn bench_limits(c: &mut Criterion) {
    let limiter = limiter();
    let headers = http::HeaderMap::new();
    let one = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let many: Vec<IpAddr> = (0..4096u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    let mut group = c.benchmark_group("limits");
    group.throughput(Throughput::Elements(1));
    group.bench_function("write_one_client", |b| {
        b.iter(|| write(&limiter, black_box(one), &headers))
    });
    let mut next = many.iter().cycle();
    group.bench_function("write_4096_clients", |b| {
        b.iter(|| write(&limiter, *next.next().unwrap(), &headers))
    });
    group.bench_function("query_permit", |b| {
        b.iter(|| {
            black_box(
                limiter
                    .admit(black_box(one), Endpoint::Query)
                    .expect("admitted"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_limits);
criterion_main!(benches);
