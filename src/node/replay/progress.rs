//! What the replayer logs about a backlog and about failures ([`Progress`]):
//! once per event, never per record. A backlog's start and end are logged
//! at info when the node was down or failing before it (at debug otherwise);
//! the first failure of a streak is a warning, repeated at most every
//! [`FAILING_REMINDER`], and the first success after it is logged once.

use std::time::{Duration, Instant};

use crate::node::Node;

/// How often a replay that keeps failing is logged again.
pub(super) const FAILING_REMINDER: Duration = Duration::from_secs(300);

/// What the replayer has logged about the current backlog and failures.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// The node was down or replays failed since the queue was last empty.
    pub(super) held_back: bool,
    /// Set while a backlog is replayed.
    backlog: Option<Backlog>,
    /// Failed attempts in a row, and when the last line about them was logged.
    failures: u32,
    reported_at: Option<Instant>,
}

#[derive(Debug)]
struct Backlog {
    started: Instant,
    /// The queue's replayed counter when it started.
    replayed_before: u64,
    /// Whether its start was logged at info (it follows a node that was down
    /// or failing): its end is logged at the same level.
    announced: bool,
}

impl Progress {
    /// Before a replay attempt: logs the start of a backlog's replay, at
    /// info once the node has been held back.
    pub(super) fn replaying(&mut self, node: &Node) {
        let stats = node.queue().stats();
        let fresh = self.backlog.is_none();
        let backlog = self.backlog.get_or_insert(Backlog {
            started: Instant::now(),
            replayed_before: stats.replayed,
            announced: false,
        });
        let (name, cluster) = (node.name(), node.cluster());
        let (records, bytes) = (stats.records, stats.bytes);
        if self.held_back && !backlog.announced {
            backlog.announced = true;
            tracing::info!(node = %name, %cluster, records, bytes, "replaying the node's queue");
        } else if fresh {
            tracing::debug!(node = %name, %cluster, records, bytes, "replaying the node's queue");
        }
    }

    /// The queue is empty: logs the end of a backlog's replay.
    pub(super) fn queue_empty(&mut self, node: &Node) {
        self.held_back = false;
        let Some(backlog) = self.backlog.take() else {
            return;
        };
        let records = node
            .queue()
            .stats()
            .replayed
            .saturating_sub(backlog.replayed_before);
        let (name, cluster, took) = (node.name(), node.cluster(), backlog.started.elapsed());
        if backlog.announced {
            tracing::info!(node = %name, %cluster, records, ?took, "queue replayed; the node is up to date");
        } else {
            tracing::debug!(node = %name, %cluster, records, ?took, "queue replayed; the node is up to date");
        }
    }

    pub(super) fn succeeded(&mut self, node: &Node) {
        if self.failures > 0 {
            let failures = std::mem::take(&mut self.failures);
            tracing::info!(node = %node.name(), cluster = %node.cluster(), failed_attempts = failures, "replay succeeded again");
        }
        self.reported_at = None;
    }

    pub(super) fn failed(&mut self, node: &Node, message: &str, retry_in: Duration) {
        self.held_back = true;
        self.failures += 1;
        let due = match self.reported_at {
            None => true,
            Some(at) => at.elapsed() >= FAILING_REMINDER,
        };
        if due {
            self.reported_at = Some(Instant::now());
            tracing::warn!(node = %node.name(), cluster = %node.cluster(), error = %message, failed_attempts = self.failures, ?retry_in, "replay failed");
        } else {
            tracing::debug!(node = %node.name(), error = %message, ?retry_in, "replay failed again");
        }
    }
}
