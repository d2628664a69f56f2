//! Line-protocol scanning throughput (bytes per second, one core).
//!
//! * `telegraf`: a 5,000-line Telegraf-like batch (about 500 KB): cpu, mem,
//!   disk and net measurements with 3–6 tags, 4–10 fields and nanosecond
//!   timestamps, a few string fields.
//! * `escape_heavy`: 5,000 lines with escaped commas, spaces and equals
//!   signs in measurements and tags, and quoted string fields holding
//!   spaces, commas, `\"` and newlines.
//!
//! Each is measured with `lines` (find every line and its measurement),
//! with `split_by` (batches for two keys of the contiguous body), with the
//! body cut into 64 KiB chunks as hyper hands it over: `concat_split_by_64k`
//! (join the chunks, then `split_by`: what `/write` did before
//! `split_payload`) and `split_payload_64k` (what it does now), and with
//! `count_lines` (the newline count behind
//! `influxdb_router_write_lines_total`, done on every uncompressed write).
//! The input sizes are printed when the bench starts.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use influxdb_router::monitor::http::count_lines;
use influxdb_router::payload::Payload;
use influxdb_router::protocol::line::{lines, split_by, split_payload};

const LINES: usize = 5_000;
/// The largest chunk hyper hands a body over in.
const CHUNK: usize = 64 * 1024;
const START_NS: u64 = 1_718_000_000_000_000_000;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A float with two decimals below `max`.
    fn float(&mut self, max: u64) -> String {
        format!("{}.{:02}", self.below(max), self.below(100))
    }
}

/// One Telegraf-like line: 3–6 tags, 4–10 fields, a timestamp. Lines come
/// in per-host gathers as Telegraf sends them: four cpu lines (cpu0–cpu2 and
/// cpu-total), mem, two disks, two network interfaces.
fn telegraf_line(rng: &mut Rng, i: usize) -> String {
    let gather = i / 9;
    let host = format!("host=web{:02},dc=eu{}", gather % 40, gather % 3);
    let ts = START_NS + (gather as u64) * 10_000_000_000;
    match i % 9 {
        n @ 0..=3 => format!(
            "cpu,cpu=cpu{},{host} user={},system={},idle={},iowait={} {ts}",
            if n == 3 {
                "-total".to_string()
            } else {
                n.to_string()
            },
            rng.float(30),
            rng.float(10),
            rng.float(100),
            rng.float(5),
        ),
        4 => format!(
            "mem,{host},env=prod used={}i,free={}i,cached={}i,used_percent={} {ts}",
            rng.below(1 << 32),
            rng.below(1 << 32),
            rng.below(1 << 28),
            rng.float(100),
        ),
        n @ 5..=6 => format!(
            "disk,device=sda{n},fstype=ext4,path=/d{n},{host} \
             free={}i,used={}i,used_percent={},ro=false {ts}",
            rng.below(1 << 36),
            rng.below(1 << 36),
            rng.float(100),
        ),
        n => format!(
            "net,interface=eth{},{host} recv={}i,sent={}i,drop={}i,state=\"up\" {ts}",
            n - 7,
            rng.below(1 << 32),
            rng.below(1 << 32),
            rng.below(100),
        ),
    }
}

/// One line full of escapes and quoted strings with newlines.
fn escaped_line(rng: &mut Rng, i: usize) -> String {
    let ts = START_NS + i as u64;
    format!(
        "my\\ app\\,events,host\\ name=web\\ {:02},path=C:\\\\Program\\ Files\\\\x,k\\=v=a\\=b \
         msg=\"GET /a?b=c, d=e \\\"quoted\\\"\nsecond line, with spaces\",\
         user=\"o'brien, \\\"jr\\\"\",code={}i,ok=true {ts}",
        rng.below(40),
        200 + rng.below(300),
    )
}

fn batch(line: fn(&mut Rng, usize) -> String) -> Bytes {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut body = String::new();
    for i in 0..LINES {
        body.push_str(&line(&mut rng, i));
        body.push('\n');
    }
    Bytes::from(body)
}

/// Lines found, plus measurement bytes so nothing is optimised away.
fn scan(body: &[u8]) -> usize {
    lines(body)
        .map(|l| l.map_or(0, |l| l.measurement.len() + 1))
        .sum()
}

fn bench_body(c: &mut Criterion, name: &str, body: &Bytes) {
    let found = lines(body).filter(|l| l.is_ok()).count();
    assert_eq!(found, LINES, "{name}: every line must scan");
    eprintln!("{name}: {LINES} lines, {} bytes", body.len());

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("lines", |b| b.iter(|| scan(black_box(body))));
    group.bench_function("split_by", |b| {
        b.iter(|| {
            let batches = split_by(black_box(body), |m| m.len() % 2).expect("valid body");
            batches.iter().map(|(_, runs)| runs.len()).sum::<usize>()
        })
    });
    let payload = Payload::from_chunks(
        (0..body.len())
            .step_by(CHUNK)
            .map(|i| body.slice(i..(i + CHUNK).min(body.len())))
            .collect(),
    );
    let old: Vec<(usize, Vec<u8>)> = split_by(&payload.to_contiguous(), |m| m.len() % 2)
        .expect("valid body")
        .into_iter()
        .map(|(k, runs)| (k, runs.concat()))
        .collect();
    let new: Vec<(usize, Vec<u8>)> = split_payload(&payload, |m| m.len() % 2)
        .expect("valid body")
        .into_iter()
        .map(|(k, out)| (k, out.chunks().concat()))
        .collect();
    assert!(old == new, "{name}: split_payload differs from split_by");
    group.bench_function("concat_split_by_64k", |b| {
        b.iter(|| {
            let joined = black_box(&payload).to_contiguous();
            let batches = split_by(&joined, |m| m.len() % 2).expect("valid body");
            batches.iter().map(|(_, runs)| runs.len()).sum::<usize>()
        })
    });
    group.bench_function("split_payload_64k", |b| {
        b.iter(|| {
            let batches = split_payload(black_box(&payload), |m| m.len() % 2).expect("valid body");
            batches
                .iter()
                .map(|(_, out)| out.chunks().len())
                .sum::<usize>()
        })
    });
    let chunks = [body.clone()];
    let newlines = body.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(
        count_lines(&chunks),
        newlines as u64,
        "{name}: physical lines"
    );
    group.bench_function("count_lines", |b| {
        b.iter(|| count_lines(black_box(&chunks)))
    });
    group.finish();
}

fn bench_lines(c: &mut Criterion) {
    bench_body(c, "telegraf", &batch(telegraf_line));
    bench_body(c, "escape_heavy", &batch(escaped_line));
}

criterion_group!(benches, bench_lines);
criterion_main!(benches);
