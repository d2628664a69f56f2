//! `admin worker`: takes jobs from the queue one at a time (prefetch 1),
//! runs each with the same function as the command of the same name, and
//! keeps its record current: state, worker, heartbeat, progress, runs.
//!
//! A message is acknowledged only once its job is done, has failed for
//! good, or was cancelled; a worker that dies leaves it unacknowledged, so
//! RabbitMQ hands it to another worker, which resumes from the pieces the
//! record lists. A job first takes a lock per node it writes to; while
//! another job holds one it waits (state `waiting`, naming the holder), and
//! after a while hands the message back so the worker can serve others.
//! A failing job is tried again with backoff up to `[control] max_attempts`.
//! Redis or RabbitMQ down: the worker says so, waits and reconnects.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::FieldTable;

use super::amqp::Jobs;
use super::store::{Record, Store};
use super::{JobCommand, JobMessage};
use crate::config::Config;
use crate::control::endpoint::{self, Allow};
use crate::control::progress::{Display, Meter};
use crate::control::ControlError;
use crate::control::{
    backfill, backup, cq_backfill, create_database, rebalance, recover_node, restore, sync_schema,
    verify,
};

/// How often a running job's record and locks are refreshed.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// `admin worker` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Run one job, then exit (0 when it was done, 1 when it failed)
    #[arg(long)]
    pub once: bool,
    /// Jobs run side by side by this worker (each one at a time, on its own channel)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub concurrency: usize,
}

/// A worker's identity in records and locks: `host-pid-random`.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let mut bytes = [0u8; 3];
    super::fill_random(&mut bytes);
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}-{}-{suffix}", std::process::id())
}

/// Runs the worker until it is stopped (or, with `--once`, after one job).
pub async fn run(config: &Config, args: &WorkerArgs) -> Result<(), ControlError> {
    let id = worker_id();
    tracing::info!(worker = %id, queue = %super::amqp::queue_name(&config.routing.key_prefix), "worker started");
    if args.once {
        return consume(config, &id, true).await;
    }
    let lanes = (0..args.concurrency.max(1)).map(|lane| {
        let id = format!("{id}.{lane}");
        async move { consume(config, &id, false).await }
    });
    futures_util::future::join_all(lanes).await;
    Ok(())
}

/// One lane: connects (again and again while Redis or RabbitMQ is down) and
/// handles deliveries one at a time.
async fn consume(config: &Config, worker: &str, once: bool) -> Result<(), ControlError> {
    let routing = &config.routing;
    let mut delay = Duration::from_secs(1);
    loop {
        let connected = async {
            let store = Store::connect(&routing.redis_url, &routing.key_prefix).await?;
            let jobs = Jobs::connect(&routing.amqp_url, &routing.key_prefix).await?;
            jobs.prefetch_one().await?;
            Ok::<_, ControlError>((store, jobs))
        }
        .await;
        let (store, jobs) = match connected {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(%worker, error = %e, retry_in = ?delay, "worker cannot reach its queue; waiting");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        delay = Duration::from_secs(1);
        let consumer = jobs
            .channel
            .basic_consume(
                &jobs.queue,
                worker,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await;
        let mut consumer = match consumer {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%worker, error = %e, "cannot consume jobs; reconnecting");
                jobs.close().await;
                continue;
            }
        };
        tracing::info!(%worker, "waiting for jobs");
        while let Some(delivery) = consumer.next().await {
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(%worker, error = %e, "the job queue connection broke; reconnecting");
                    break;
                }
            };
            let outcome = handle(config, &store, worker, &delivery).await;
            if once && matches!(outcome, Outcome::Done | Outcome::Failed(_)) {
                jobs.close().await;
                return match outcome {
                    Outcome::Failed(e) => Err(ControlError::Failed(e)),
                    _ => Ok(()),
                };
            }
        }
        jobs.close().await;
    }
}

/// What became of one delivery.
enum Outcome {
    Done,
    Failed(String),
    /// Skipped, handed back or dead-lettered: nothing ran to an end here.
    Other,
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
        tracing::warn!(error = %e, "cannot acknowledge a job message");
    }
}

fn now() -> String {
    crate::clock::unix_ms().to_string()
}

async fn handle(config: &Config, store: &Store, worker: &str, delivery: &Delivery) -> Outcome {
    let parsed = serde_json::from_slice::<JobMessage>(&delivery.data).and_then(|m| {
        if super::valid_id(&m.id) {
            Ok(m)
        } else {
            Err(serde::de::Error::custom(
                "the job id must be 1 to 128 of [A-Za-z0-9._-]",
            ))
        }
    });
    let message: JobMessage = match parsed {
        Ok(m) => m,
        Err(e) => {
            // with an id, record the failure; without, dead-letter the bytes
            let value = serde_json::from_slice::<serde_json::Value>(&delivery.data).ok();
            let text = |name: &str| {
                let v = value.as_ref()?.get(name)?.as_str()?;
                Some(v.to_string())
            };
            let id = text("id").filter(|id| super::valid_id(id));
            match id {
                Some(id) => {
                    let error = format!("malformed job message: {e}");
                    tracing::warn!(%worker, job = %id, %error, "job failed");
                    // published without `admin enqueue`: a listed record, as for any job
                    let existing = store.get(&id).await;
                    if let Ok(None) = existing {
                        let job = JobMessage {
                            id: id.clone(),
                            kind: text("kind").unwrap_or_default(),
                            args: Vec::new(),
                        };
                        let _ = store.create(&job).await;
                    }
                    // a malformed message must not overwrite another job's record
                    let other_job = matches!(&existing, Ok(Some(r)) if r.get("state").map(String::as_str) != Some("queued"));
                    if other_job {
                        tracing::warn!(%worker, job = %id, "a malformed message reuses the id of a job under way or ended; dead-lettered");
                        let _ = delivery
                            .acker
                            .reject(BasicRejectOptions { requeue: false })
                            .await;
                        return Outcome::Other;
                    }
                    let _ = mark_failed(store, &id, &error).await;
                    ack(delivery).await;
                }
                None => {
                    tracing::warn!(%worker, error = %e, "a message that is not a job; dead-lettered");
                    let _ = delivery
                        .acker
                        .reject(BasicRejectOptions { requeue: false })
                        .await;
                }
            }
            return Outcome::Other;
        }
    };
    let id = message.id.clone();
    let record = match store.get(&id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            // published without `admin enqueue`: give it a record
            if store.create(&message).await.is_err() {
                return hand_back(delivery).await;
            }
            match store.get(&id).await {
                Ok(Some(r)) => r,
                _ => return hand_back(delivery).await,
            }
        }
        Err(e) => {
            tracing::warn!(%worker, job = %id, error = %e, "cannot read the job record; handing the job back");
            return hand_back(delivery).await;
        }
    };
    let state = record.get("state").map(String::as_str).unwrap_or("");
    if matches!(state, "done" | "failed" | "cancelled") {
        tracing::info!(%worker, job = %id, state, "job already ended; message dropped");
        ack(delivery).await;
        return Outcome::Other;
    }
    if record.get("cancel").map(String::as_str) == Some("1") {
        let _ = store
            .set(&id, &[("state", "cancelled".into()), ("ended_ms", now())])
            .await;
        ack(delivery).await;
        return Outcome::Other;
    }
    let command = match JobCommand::parse(&message.kind, &message.args) {
        Ok(c) => c,
        Err(e) => {
            let error = e.to_string();
            tracing::warn!(%worker, job = %id, %error, "job has bad flags; failed");
            let _ = mark_failed(store, &id, &error).await;
            ack(delivery).await;
            return Outcome::Failed(error);
        }
    };
    run_job(config, store, worker, delivery, &id, &record, &command).await
}

async fn hand_back(delivery: &Delivery) -> Outcome {
    let _ = delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Outcome::Other
}

async fn mark_failed(store: &Store, id: &str, error: &str) -> Result<(), ControlError> {
    store
        .set(
            id,
            &[
                ("state", "failed".into()),
                ("error", error.to_string()),
                ("ended_ms", now()),
            ],
        )
        .await
}

/// The nodes a job writes to (its locks), by base URL.
async fn lock_targets(config: &Config, command: &JobCommand) -> Result<Vec<String>, ControlError> {
    let dst = match command {
        JobCommand::SyncSchema(a) => Some(&a.to),
        JobCommand::Backfill(a) => Some(&a.to),
        JobCommand::Restore(a) => Some(&a.to),
        JobCommand::CreateDatabase(a) => {
            let nodes = create_database::targets(config, a).await?;
            return Ok(nodes.into_iter().map(|n| n.base).collect());
        }
        // its moves are known only once it looks: one rebalance per database at a time
        JobCommand::Rebalance(a) => {
            return Ok(vec![format!(
                "rebalance/{}",
                a.db.as_deref().unwrap_or_default()
            )])
        }
        JobCommand::RecoverNode(a) => {
            let node = format!("{}/{}", a.cluster, a.node);
            let nodes = endpoint::resolve(&node, config, Allow::Node).await?;
            return Ok(nodes.into_iter().map(|n| n.base).collect());
        }
        JobCommand::CqBackfill(a) => {
            let mut nodes: Vec<String> = cq_backfill::targets(config, a)
                .await?
                .into_iter()
                .map(|n| n.base)
                .collect();
            nodes.sort();
            return Ok(nodes);
        }
        JobCommand::Verify(_) | JobCommand::Backup(_) => None,
    };
    let Some(dst) = dst else {
        return Ok(Vec::new());
    };
    let mut nodes: Vec<String> = endpoint::resolve(dst, config, Allow::NodeOrCluster)
        .await?
        .into_iter()
        .map(|e| e.base)
        .collect();
    nodes.sort();
    nodes.dedup();
    Ok(nodes)
}

fn json_list(record: &Record, field: &str) -> Vec<serde_json::Value> {
    record
        .get(field)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
async fn run_job(
    config: &Config,
    store: &Store,
    worker: &str,
    delivery: &Delivery,
    id: &str,
    record: &Record,
    command: &JobCommand,
) -> Outcome {
    let owner = format!("job {id} on {worker}");
    let ttl = config.control.job_lock_ttl;
    let max_attempts = config.control.max_attempts.max(1);
    let mut attempts: u32 = record
        .get("attempts")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let mut workers = json_list(record, "workers");
    let mut runs = json_list(record, "runs");
    let mut resumes: u64 = record
        .get("resumes")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    // a record that was running elsewhere: its worker died, this is a resume
    if record.get("state").map(String::as_str) == Some("running") {
        resumes += 1;
    }
    loop {
        // a job whose every run ended with its worker dying (a crash loop)
        // must end too: each run counts as an attempt
        if attempts >= max_attempts
            && resumes > 0
            && record.get("state").map(String::as_str) == Some("running")
        {
            let error = format!(
                "given up after {attempts} attempts: the workers running it stopped without finishing it"
            );
            tracing::warn!(%worker, job = %id, %error, "job failed");
            let _ = mark_failed(store, id, &error).await;
            ack(delivery).await;
            return Outcome::Failed(error);
        }
        // a job whose targets cannot be named (an unknown cluster) needs no
        // lock: its run fails with the same error, as any failure
        let targets = lock_targets(config, command).await.unwrap_or_default();
        // wait for the locks, but not forever: hand the job back after a while
        let waited = Instant::now();
        let patience = (ttl * 2).max(Duration::from_secs(30));
        let locks = store.locks();
        loop {
            match locks.take_all(&targets, &owner, ttl).await {
                Ok(Ok(())) => break,
                Ok(Err(holder)) => {
                    let _ = store
                        .set(
                            id,
                            &[("state", "waiting".into()), ("waiting_for", holder.clone())],
                        )
                        .await;
                    if waited.elapsed() > patience {
                        tracing::info!(%worker, job = %id, %holder, "job still waiting for a node lock; handed back");
                        return hand_back(delivery).await;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    tracing::warn!(%worker, job = %id, error = %e, "cannot take node locks; handing the job back");
                    return hand_back(delivery).await;
                }
            }
        }
        attempts += 1;
        if workers.last().and_then(|w| w.as_str()) != Some(worker) {
            workers.push(serde_json::Value::from(worker));
        }
        let started = crate::clock::unix_ms();
        runs.push(serde_json::json!({ "worker": worker, "start_ms": started }));
        let mut fields = vec![
            ("state", "running".to_string()),
            ("worker", worker.to_string()),
            (
                "workers",
                serde_json::Value::from(workers.clone()).to_string(),
            ),
            ("runs", serde_json::Value::from(runs.clone()).to_string()),
            ("attempts", attempts.to_string()),
            ("resumes", resumes.to_string()),
            ("heartbeat_ms", started.to_string()),
            ("waiting_for", String::new()),
        ];
        if !record.contains_key("started_ms") {
            fields.push(("started_ms", started.to_string()));
        }
        let _ = store.set(id, &fields).await;
        tracing::info!(%worker, job = %id, attempt = attempts, "job running");

        let meter = Arc::new(Meter::default());
        let cancelled = Arc::new(AtomicBool::new(false));
        let beat = heartbeat(
            store.clone(),
            id.to_string(),
            targets.clone(),
            owner.clone(),
            ttl,
            meter.clone(),
            cancelled.clone(),
        );
        let beat = tokio::spawn(beat);
        let result = tokio::select! {
            result = execute(config, store, id, command, meter.clone()) => result,
            _ = wait_flag(&cancelled) => Err(ControlError::Failed("cancelled".into())),
        };
        beat.abort();
        locks.release_all(&targets, &owner).await;
        let ended = crate::clock::unix_ms();
        if let Some(last) = runs.last_mut() {
            last["end_ms"] = serde_json::Value::from(ended);
        }
        let mut progress = meter.json();
        let secs = (ended.saturating_sub(started) as f64 / 1000.0).max(1e-3);
        let points = progress["points"].as_u64().unwrap_or(0);
        progress["rate"] = serde_json::Value::from((points as f64 / secs).round());
        let progress = progress.to_string();
        let runs_text = serde_json::Value::from(runs.clone()).to_string();
        match result {
            Ok(summary) => {
                let _ = store
                    .set(
                        id,
                        &[
                            ("state", "done".into()),
                            ("summary", summary),
                            ("error", String::new()),
                            ("ended_ms", ended.to_string()),
                            ("progress", progress),
                            ("runs", runs_text),
                        ],
                    )
                    .await;
                tracing::info!(%worker, job = %id, "job done");
                ack(delivery).await;
                return Outcome::Done;
            }
            Err(_) if cancelled.load(Ordering::Relaxed) => {
                let _ = store
                    .set(
                        id,
                        &[
                            ("state", "cancelled".into()),
                            ("ended_ms", ended.to_string()),
                            ("progress", progress),
                            ("runs", runs_text),
                        ],
                    )
                    .await;
                tracing::info!(%worker, job = %id, "job cancelled");
                ack(delivery).await;
                return Outcome::Other;
            }
            Err(e) => {
                let error = e.to_string();
                let retry = attempts < max_attempts && !matches!(e, ControlError::Usage(_));
                let state = if retry { "retrying" } else { "failed" };
                let mut fields = vec![
                    ("state", state.to_string()),
                    ("error", error.clone()),
                    ("progress", progress),
                    ("runs", runs_text),
                ];
                if !retry {
                    fields.push(("ended_ms", ended.to_string()));
                }
                let _ = store.set(id, &fields).await;
                if !retry {
                    tracing::warn!(%worker, job = %id, %error, attempts, "job failed");
                    ack(delivery).await;
                    return Outcome::Failed(error);
                }
                let backoff =
                    Duration::from_secs(1u64 << attempts.min(6)).min(Duration::from_secs(60));
                tracing::warn!(%worker, job = %id, %error, attempt = attempts, retry_in = ?backoff, "job failed; trying again");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

async fn wait_flag(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every [`HEARTBEAT`]: the record's heartbeat and progress, the locks'
/// expiry, and whether the job was cancelled.
async fn heartbeat(
    store: Store,
    id: String,
    targets: Vec<String>,
    owner: String,
    ttl: Duration,
    meter: Arc<Meter>,
    cancelled: Arc<AtomicBool>,
) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let mut progress = meter.json();
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let points = progress["points"].as_u64().unwrap_or(0);
        progress["rate"] = serde_json::Value::from((points as f64 / secs).round());
        let _ = store
            .set(
                &id,
                &[("heartbeat_ms", now()), ("progress", progress.to_string())],
            )
            .await;
        match store.locks().renew_all(&targets, &owner, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %id, "a node lock of this job expired and was taken by another job")
            }
            Err(e) => tracing::warn!(job = %id, error = %e, "cannot renew node locks"),
        }
        if store.cancel_requested(&id).await.unwrap_or(false) {
            cancelled.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs a job: the command's own function, its pieces in Redis where it has any.
async fn execute(
    config: &Config,
    store: &Store,
    id: &str,
    command: &JobCommand,
    meter: Arc<Meter>,
) -> Result<String, ControlError> {
    let display = Display::Observed(meter);
    match command {
        JobCommand::SyncSchema(args) => sync_schema::run(config, args).await.map(|r| r.text()),
        JobCommand::Backfill(args) => {
            let mut ledger = store.ledger(id)?;
            let report = backfill::run(config, args, display, Some(&mut ledger)).await?;
            report.outcome()?;
            Ok(report.summary)
        }
        JobCommand::Verify(args) => {
            let report = verify::run(config, args, display).await?;
            report.outcome()?;
            Ok(report.summary)
        }
        // the files and their record stay together in DIR
        JobCommand::Backup(args) => backup::run(config, args, display).await.map(|r| r.summary),
        JobCommand::Restore(args) => {
            let mut ledger = store.ledger(id)?;
            let report = restore::run(config, args, display, Some(&mut ledger)).await?;
            report.outcome()?;
            Ok(report.summary)
        }
        JobCommand::CreateDatabase(args) => {
            create_database::run(config, args).await.map(|r| r.summary)
        }
        JobCommand::Rebalance(args) => {
            let mut ledger = store.ledger(id)?;
            let report = rebalance::run(config, args, display, Some(&mut ledger)).await?;
            Ok(format!("{}{}", report.instructions, report.summary))
        }
        JobCommand::RecoverNode(args) => {
            let mut ledger = store.ledger(id)?;
            let report = recover_node::run(config, args, display, Some(&mut ledger)).await?;
            // the ranges copied and verified, for operators and tests
            store
                .set(id, &[("ranges", report.ranges_json().to_string())])
                .await?;
            report.outcome()?;
            Ok(report.summary())
        }
        JobCommand::CqBackfill(args) => {
            let mut ledger = store.ledger(id)?;
            let report = cq_backfill::run(config, args, display, Some(&mut ledger)).await?;
            report.outcome()?;
            Ok(report.summary)
        }
    }
}
