//! Per-node metrics: requests by kind, failures, latency, bytes sent,
//! health, and the node's queue.
//!
//! A [`NodeMetrics`] is registered when a [`crate::node::Node`] is built.
//! Nodes are rebuilt when the routing table changes; registering the same
//! cluster and node name again returns handles to the same series, so the
//! counts of a node carry on across routing reloads.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use super::events::{Event, EventKind, Events, FullThrottle};
use super::{names, Registrar};
use crate::node::{Metrics, RequestKind};
use crate::queue::QueueStats;

/// The handles of one node's metrics, and where its events go.
#[derive(Debug)]
pub struct NodeMetrics {
    cluster: String,
    node: String,
    requests: [Counter; RequestKind::ALL.len()],
    failures: Counter,
    duration: Histogram,
    sent_bytes: Counter,
    healthy: Gauge,
    queue_bytes: Gauge,
    queue_disk_bytes: Gauge,
    queue_records: Gauge,
    position_stale: Gauge,
    appended_records: Counter,
    appended_bytes: Counter,
    replayed_records: Counter,
    replayed_bytes: Counter,
    dead_letters: Counter,
    dropped: Counter,
    rejected: Counter,
    events: Events,
    full: FullThrottle,
}

impl NodeMetrics {
    pub(super) fn register(
        r: &Registrar<'_>,
        events: &Events,
        cluster: &str,
        node: &str,
    ) -> NodeMetrics {
        let labels = [("cluster", cluster), ("node", node)];
        let counter = |metric| r.counter(metric, &labels);
        let gauge = |metric| r.gauge(metric, &labels);
        NodeMetrics {
            cluster: cluster.to_string(),
            node: node.to_string(),
            requests: std::array::from_fn(|i| {
                let kind = RequestKind::ALL[i].as_str();
                let labels = [("cluster", cluster), ("node", node), ("kind", kind)];
                r.counter(names::NODE_REQUESTS, &labels)
            }),
            failures: counter(names::NODE_FAILURES),
            duration: r.histogram(names::NODE_DURATION, &labels),
            sent_bytes: counter(names::NODE_SENT),
            healthy: gauge(names::NODE_HEALTHY),
            queue_bytes: gauge(names::QUEUE_BYTES),
            queue_disk_bytes: gauge(names::QUEUE_DISK_BYTES),
            queue_records: gauge(names::QUEUE_RECORDS),
            position_stale: gauge(names::QUEUE_POSITION_STALE),
            appended_records: counter(names::QUEUE_APPENDED_RECORDS),
            appended_bytes: counter(names::QUEUE_APPENDED_BYTES),
            replayed_records: counter(names::QUEUE_REPLAYED_RECORDS),
            replayed_bytes: counter(names::QUEUE_REPLAYED_BYTES),
            dead_letters: counter(names::QUEUE_DEAD_LETTERS),
            dropped: counter(names::QUEUE_DROPPED),
            rejected: counter(names::QUEUE_REJECTED),
            events: events.clone(),
            full: FullThrottle::default(),
        }
    }

    fn emit(&self, kind: EventKind, message: impl Into<String>) {
        let event = Event::new(kind, message).about(&self.cluster, &self.node);
        self.events.emit(event);
    }
}

impl Metrics for NodeMetrics {
    /// Counts one request to the node: its body size, how long until the
    /// response head (or the failure), and whether it failed.
    fn request(&self, kind: RequestKind, body_bytes: u64, took: Duration, failed: bool) {
        self.requests[kind as usize].increment(1);
        self.sent_bytes.increment(body_bytes);
        self.duration.record(took.as_secs_f64());
        if failed {
            self.failures.increment(1);
        }
    }

    /// A record of `bytes` (frame included) went into the node's queue.
    fn appended(&self, bytes: u64) {
        self.appended_records.increment(1);
        self.appended_bytes.increment(bytes);
    }

    /// Queued records the node accepted on replay.
    fn replayed(&self, records: u64, bytes: u64) {
        self.replayed_records.increment(records);
        self.replayed_bytes.increment(bytes);
    }

    /// The node rejected a queued record of `db` for good.
    fn dead_letter(&self, db: &str, reason: &str) {
        self.dead_letters.increment(1);
        if !self.events.is_self_database(db) {
            let message = format!("a queued write to {db:?} was rejected: {reason}");
            self.emit(EventKind::DeadLetter, message);
        }
    }

    /// The full queue refused `refused` records and dropped `dropped` old ones.
    fn queue_full(&self, refused: u64, dropped: u64) {
        self.rejected.increment(refused);
        self.dropped.increment(dropped);
        let now_ms = crate::clock::unix_ms();
        if let Some(message) = self.full.note(refused, dropped, now_ms) {
            self.emit(EventKind::QueueFull, message);
        }
    }

    /// The health checker changed its verdict.
    fn health_changed(&self, healthy: bool, message: &str) {
        let kind = match healthy {
            true => EventKind::NodeUp,
            false => EventKind::NodeDown,
        };
        self.emit(kind, message);
    }

    /// Sets the gauges that mirror the node's state (at scrape time).
    fn set_state(&self, healthy: bool, queue: &QueueStats) {
        self.healthy.set(if healthy { 1.0 } else { 0.0 });
        self.queue_bytes.set(queue.pending_bytes as f64);
        self.queue_disk_bytes.set(queue.bytes as f64);
        self.queue_records.set(queue.records as f64);
        let stale = if queue.position_persist_failing {
            1.0
        } else {
            0.0
        };
        self.position_stale.set(stale);
    }
}
