//! What a node reports about itself as it works, and where that goes: the
//! [`Metrics`] a node is given when it is built. The monitor implements it
//! (Prometheus series and events); this layer never looks above itself.

use std::time::Duration;

use super::RequestKind;
use crate::queue::QueueStats;

/// The counters, gauges and events of one node.
pub trait Metrics: Send + Sync + std::fmt::Debug {
    /// One request to the node: its body size, how long until the response
    /// head (or the failure), and whether it failed.
    fn request(&self, kind: RequestKind, body_bytes: u64, took: Duration, failed: bool);
    /// A record of `bytes` (frame included) went into the node's queue.
    fn appended(&self, bytes: u64);
    /// Queued records the node accepted on replay.
    fn replayed(&self, records: u64, bytes: u64);
    /// The node rejected a queued record of `db` for good.
    fn dead_letter(&self, db: &str, reason: &str);
    /// The full queue refused `refused` records and dropped `dropped` old ones.
    fn queue_full(&self, refused: u64, dropped: u64);
    /// The health checker changed its verdict.
    fn health_changed(&self, healthy: bool, message: &str);
    /// The node's state at scrape time: health and queue.
    fn set_state(&self, healthy: bool, queue: &QueueStats);
}

/// Metrics that go nowhere (for nodes built in tests).
#[derive(Debug, Default)]
pub struct Unmetered;

impl Metrics for Unmetered {
    fn request(&self, _: RequestKind, _: u64, _: Duration, _: bool) {}
    fn appended(&self, _: u64) {}
    fn replayed(&self, _: u64, _: u64) {}
    fn dead_letter(&self, _: &str, _: &str) {}
    fn queue_full(&self, _: u64, _: u64) {}
    fn health_changed(&self, _: bool, _: &str) {}
    fn set_state(&self, _: bool, _: &QueueStats) {}
}
