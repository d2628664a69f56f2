//! Durable queue throughput on this machine's disk.
//!
//! * `append/batch_fsync/500KiB_x32`: 32 tasks append 500 KiB line-protocol
//!   records at once with `fsync = batch` (group commit); one iteration is
//!   one record from each task (16 MiB). Each measurement starts from an
//!   empty queue in a fresh temporary directory.
//! * `append/batch_fsync/1KiB_x32`: the same with 1 KiB records: the
//!   per-record cost (channel, ack, encode) rather than the disk.
//! * `replay/500KiB` and `replay/1KiB`: what the replayer does: one
//!   `peek_batch(8 MiB, 10 000)` and one `commit` per iteration, over a queue
//!   filled (untimed) just before. The data is still in the page cache, as it
//!   is when a node comes back soon after going down.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use influxdb_router::payload::Payload;
use influxdb_router::queue::{FsyncPolicy, OnFull, Queue, QueueConfig, Record, RecordKind};
use tokio::runtime::Runtime;

const APPENDERS: usize = 32;
const BATCH_BYTES: usize = 8 << 20;
const BATCH_RECORDS: usize = 10_000;

/// A write of about `len` bytes of realistic line protocol.
fn record(len: usize) -> Record {
    let line = b"cpu,host=server01,region=eu-west,cpu=cpu-total usage_idle=98.2,usage_user=1.1 1700000000000000000\n";
    let body: Vec<u8> = line.iter().copied().cycle().take(len).collect();
    Record {
        kind: RecordKind::Write,
        accepted_at_ms: 1_700_000_000_000,
        db: String::from("telegraf"),
        rp: String::new(),
        precision: String::from("ns"),
        gzip: false,
        auth: None,
        body: Payload::from(Bytes::from(body)),
    }
}

fn open(dir: &Path) -> Queue {
    let config = QueueConfig::new(64 << 30, OnFull::Reject, FsyncPolicy::Batch);
    Queue::open(dir, config).expect("open queue")
}

/// `per_task` records from each of the appenders, concurrently.
async fn append_from_all(queue: &Queue, record: &Record, per_task: u64) {
    let mut tasks = Vec::with_capacity(APPENDERS);
    for _ in 0..APPENDERS {
        let (queue, record) = (queue.clone(), record.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                queue.append(record.clone()).await.expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("appender task");
    }
}

fn bench_append(c: &mut Criterion, rt: &Runtime, len: usize, name: &str) {
    let record = record(len);
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes((len * APPENDERS) as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::TempDir::new().expect("temp dir");
            let queue = open(dir.path());
            let started = Instant::now();
            rt.block_on(append_from_all(&queue, &record, iters));
            let took = started.elapsed();
            queue.close();
            took
        })
    });
    group.finish();
}

fn bench_replay(c: &mut Criterion, rt: &Runtime, len: usize, name: &str) {
    let record = record(len);
    let per_batch = (BATCH_BYTES / record.encoded_len() as usize).clamp(1, BATCH_RECORDS);
    let mut group = c.benchmark_group("replay");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes((per_batch * len) as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::TempDir::new().expect("temp dir");
            let queue = open(dir.path());
            let per_task = (iters * per_batch as u64).div_ceil(APPENDERS as u64);
            rt.block_on(append_from_all(&queue, &record, per_task));
            let started = Instant::now();
            let mut bytes = 0;
            for _ in 0..iters {
                let batch = queue.peek_batch(BATCH_BYTES, BATCH_RECORDS).expect("peek");
                bytes += batch.iter().map(|(_, r)| r.body.len()).sum::<u64>();
                let (last, _) = batch.last().expect("a filled queue");
                queue.commit(*last).expect("commit");
            }
            let took = started.elapsed();
            assert!(bytes >= iters * (per_batch * len) as u64);
            queue.close();
            took
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    bench_append(c, &rt, 500 << 10, "batch_fsync/500KiB_x32");
    bench_append(c, &rt, 1 << 10, "batch_fsync/1KiB_x32");
    bench_replay(c, &rt, 500 << 10, "500KiB");
    bench_replay(c, &rt, 1 << 10, "1KiB");
}

criterion_group!(queue, benches);
criterion_main!(queue);
