//! The replayer: the one reader of a node's queue.
//!
//! While the node is healthy it takes batches from the head of the queue,
//! sends them in order and commits past what the node acknowledged.
//! Consecutive writes for the same database, retention policy and precision
//! go out as one request (their bodies' chunks, not copied); statements go
//! one by one as `POST /query`. A 5xx or a connection failure stops the
//! batch and retries after a delay that doubles from `retry_min` to
//! `retry_max`. A 4xx cannot be fixed by retrying: a batch that gets one is
//! resent record by record, and a record the node rejects on its own goes to
//! the dead-letter file so the records behind it move on. So does a record
//! whose answer the client cannot read ([`super::NodeError::Unreadable`])
//! [`UNREADABLE_ATTEMPTS`] times in a row: one record can never hold back
//! every later write to the node.
//!
//! A record is replayed with the credentials of the client that sent it,
//! kept in the record, and never with the router's: a queued request can do
//! nothing the node would have refused the client. A 401 or 403 at replay
//! is final like any 4xx (dead-lettered, logged, counted). A node in
//! mode `off` is not replayed to; `drain` nodes are (no new work, but their
//! backlog still goes out).
//!
//! Logged once per event, never per record: a replay that resumes after the
//! node was down or failing, and the queue running empty after it (at debug
//! for a record queued and replayed at once); the first failure of a streak
//! (then at most every [`FAILING_REMINDER`](progress::FAILING_REMINDER))
//! and the first success after it; and the records a batch moved to the
//! dead-letter file, in one line.
//!
//! * here: the loop, batches cut into groups, the strikes against a record
//!   whose answers are unreadable, and dead-lettering.
//! * `request`: records to an HTTP request, and its answer to a `Sent`.
//! * `progress`: what is logged about a backlog and about failures.

mod progress;
mod request;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::Node;
use crate::config::BufferConfig;
use crate::queue::{Position, Record, RecordKind};
use progress::Progress;
use request::{send, Sent};

/// Most bytes and records read from the queue for one batch.
const BATCH_BYTES: usize = 8 << 20;
const BATCH_RECORDS: usize = 10_000;

/// How long an idle replayer sleeps before looking again without a wake-up.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// How many times in a row one record may get an unreadable answer before
/// it is moved to the dead-letter file, so that it cannot hold back every
/// record behind it.
const UNREADABLE_ATTEMPTS: u32 = 3;

/// Drains `node`'s queue whenever the node is healthy, until `stop` changes.
pub async fn run(node: Arc<Node>, buffer: BufferConfig, mut stop: watch::Receiver<bool>) {
    if node.mode() == crate::config::NodeMode::Off {
        // an `off` node gets nothing, replays included; its queue waits on disk
        let _ = stop.changed().await;
        return;
    }
    let mut delay = buffer.retry_min;
    let mut progress = Progress::default();
    let mut strikes = Strikes::default();
    loop {
        let wait = if node.queue().is_empty() {
            progress.queue_empty(&node);
            wait_for(node.queue().appended(), IDLE_RECHECK, &mut stop).await
        } else if !node.is_healthy() {
            progress.held_back = true;
            wait_for(std::future::pending(), delay, &mut stop).await
        } else {
            progress.replaying(&node);
            match drain_once(&node, &mut strikes).await {
                Ok(()) => {
                    progress.succeeded(&node);
                    delay = buffer.retry_min;
                    Wake::Go
                }
                Err(message) => {
                    progress.failed(&node, &message, delay);
                    node.update_detail(|d| d.replay_error = Some(message));
                    let wait = wait_for(std::future::pending(), delay, &mut stop).await;
                    delay = (delay * 2).min(buffer.retry_max);
                    wait
                }
            }
        };
        if wait == Wake::Stop {
            return;
        }
    }
}
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    Go,
    Stop,
}

async fn wait_for(
    event: impl std::future::Future<Output = ()>,
    at_most: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Wake {
    tokio::select! {
        _ = event => Wake::Go,
        _ = tokio::time::sleep(at_most) => Wake::Go,
        _ = stop.changed() => Wake::Stop,
    }
}

/// The record that last got an unreadable answer, and how often in a row.
#[derive(Debug, Default)]
struct Strikes {
    at: Option<Position>,
    count: u32,
}

impl Strikes {
    /// Counts one more unreadable answer for the record ending at `at`;
    /// true once it has had [`UNREADABLE_ATTEMPTS`].
    fn hit(&mut self, at: Position) -> bool {
        if self.at == Some(at) {
            self.count += 1;
        } else {
            *self = Strikes {
                at: Some(at),
                count: 1,
            };
        }
        self.count >= UNREADABLE_ATTEMPTS
    }
}

/// Replays one batch from the head of the queue; `Err` when the node failed.
async fn drain_once(node: &Arc<Node>, strikes: &mut Strikes) -> Result<(), String> {
    let queue = node.queue().clone();
    let batch = tokio::task::spawn_blocking(move || queue.peek_batch(BATCH_BYTES, BATCH_RECORDS))
        .await
        .map_err(|e| format!("queue read task failed: {e}"))?
        .map_err(|e| format!("queue read failed: {e}"))?;
    let started = Instant::now();
    let mut done = 0;
    for group in groups(&batch) {
        let result = send_group(node, group, strikes).await;
        // commit what the node has before giving up on the rest
        let last = group.last().map(|(position, _)| *position);
        match (result, last) {
            (Ok(()), Some(upto)) => commit(node, upto).await?,
            (Err(message), _) => return Err(message),
            (Ok(()), None) => {}
        }
        done += group.len();
    }
    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-6);
    node.update_detail(|d| {
        d.replay_error = None;
        d.replay_rate = rate;
        d.replayed_at = Some(SystemTime::now());
    });
    Ok(())
}

async fn commit(node: &Node, upto: Position) -> Result<(), String> {
    let queue = node.queue().clone();
    tokio::task::spawn_blocking(move || queue.commit(upto))
        .await
        .map_err(|e| format!("queue commit task failed: {e}"))?
        .map_err(|e| format!("queue commit failed: {e}"))
}

/// Splits a batch into runs that can be sent as one request.
fn groups(batch: &[(Position, Record)]) -> Vec<&[(Position, Record)]> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..=batch.len() {
        if i == batch.len() || !joinable(&batch[start].1, &batch[i].1) {
            groups.push(&batch[start..i]);
            start = i;
        }
    }
    groups
}

/// Two records go in one request when both are plain writes to the same place.
fn joinable(a: &Record, b: &Record) -> bool {
    a.kind == RecordKind::Write
        && b.kind == RecordKind::Write
        && !a.gzip
        && !b.gzip
        && a.db == b.db
        && a.rp == b.rp
        && a.precision == b.precision
        && a.auth == b.auth
}

/// Sends a group; on a 4xx or an unreadable answer for several records,
/// falls back to one by one.
async fn send_group(
    node: &Arc<Node>,
    group: &[(Position, Record)],
    strikes: &mut Strikes,
) -> Result<(), String> {
    let records: Vec<&Record> = group.iter().map(|(_, r)| r).collect();
    match send(node, &records).await {
        Sent::Ok => {
            let bytes = records.iter().map(|r| r.encoded_len()).sum();
            node.metrics().replayed(records.len() as u64, bytes);
            Ok(())
        }
        Sent::Retry(message) => Err(message),
        Sent::Rejected(_) | Sent::Unreadable(_) if group.len() > 1 => {
            let mut rejected = Rejected::default();
            let result = one_by_one(node, group, &mut rejected, strikes).await;
            rejected.log(node);
            result
        }
        Sent::Rejected(reason) => {
            let (_, record) = &group[0];
            let mut rejected = Rejected::default();
            rejected.add(record, &reason);
            rejected.log(node);
            dead_letter(node, record, &reason).await
        }
        Sent::Unreadable(message) => {
            let (position, record) = &group[0];
            unreadable(node, *position, record, message, strikes).await
        }
    }
}

/// A record the node answered with something unreadable: an error to retry
/// later, until it has happened [`UNREADABLE_ATTEMPTS`] times in a row;
/// then the record goes to the dead-letter file (the caller commits past it).
async fn unreadable(
    node: &Arc<Node>,
    position: Position,
    record: &Record,
    message: String,
    strikes: &mut Strikes,
) -> Result<(), String> {
    if !strikes.hit(position) {
        return Err(message);
    }
    let reason = format!("{message} ({UNREADABLE_ATTEMPTS} times in a row)");
    tracing::warn!(node = %node.name(), cluster = %node.cluster(), db = %record.db, %reason, "the node's answers to a queued record are unreadable; moved to the dead-letter file");
    dead_letter(node, record, &reason).await
}

/// Sends a group record by record after the node rejected it whole.
async fn one_by_one(
    node: &Arc<Node>,
    group: &[(Position, Record)],
    rejected: &mut Rejected,
    strikes: &mut Strikes,
) -> Result<(), String> {
    for (position, record) in group {
        match send(node, &[record]).await {
            Sent::Ok => node.metrics().replayed(1, record.encoded_len()),
            Sent::Retry(message) => return Err(message),
            Sent::Rejected(reason) => {
                rejected.add(record, &reason);
                dead_letter(node, record, &reason).await?
            }
            Sent::Unreadable(message) => {
                unreadable(node, *position, record, message, strikes).await?
            }
        }
        commit(node, *position).await?;
    }
    Ok(())
}

/// The records of one group moved to the dead-letter file: logged in one line.
#[derive(Debug, Default)]
struct Rejected {
    records: u64,
    /// The database and reason of the first.
    first: Option<(String, String)>,
}

impl Rejected {
    fn add(&mut self, record: &Record, reason: &str) {
        self.records += 1;
        self.first
            .get_or_insert_with(|| (record.db.clone(), reason.to_string()));
    }

    fn log(&self, node: &Node) {
        if let Some((db, reason)) = &self.first {
            tracing::warn!(node = %node.name(), cluster = %node.cluster(), records = self.records, %db, %reason, "node rejected queued records; moved to the dead-letter file");
        }
    }
}

async fn dead_letter(node: &Node, record: &Record, reason: &str) -> Result<(), String> {
    tracing::debug!(node = %node.name(), db = %record.db, %reason, "moving a rejected queued record to the dead-letter file");
    let (queue, moved, why) = (node.queue().clone(), record.clone(), reason.to_string());
    tokio::task::spawn_blocking(move || queue.dead_letter(&moved, &why))
        .await
        .map_err(|e| format!("dead-letter task failed: {e}"))?
        .map_err(|e| format!("dead-letter write failed: {e}"))?;
    node.metrics().dead_letter(&record.db, reason);
    Ok(())
}
