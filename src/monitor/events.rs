//! Events for self-monitoring: node down and up, routing table swapped and
//! refused, queue full, dead letter.
//!
//! Code that sees an event hands it to [`Events::emit`], which never waits:
//! the event goes into a bounded channel (when `self_database` is set) that
//! the self-monitoring writer drains; when the channel is full the event is
//! counted as dropped. Every event is also counted in
//! `influxdb_router_events_total{event}`, with or without `self_database`.
//!
//! # No feedback loops
//!
//! Event points are written through the router's own write path, so writing
//! them can itself cause events. Those that can are bounded:
//!
//! * `queue_full` is emitted at most once per node per [`QUEUE_FULL_GAP`]
//!   (with the count of records refused or dropped since the last one), so a
//!   full queue that also refuses the event about itself adds at most one
//!   event per node per second;
//! * `dead_letter` is not emitted for records of `self_database` itself (a
//!   node that rejects the router's own points would otherwise reject the
//!   point about the rejection, and so on); they are still counted;
//! * node health and routing events do not depend on writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use tokio::sync::mpsc;

use super::{names, Registrar};

/// Events waiting for the writer, at most.
pub const CHANNEL_CAPACITY: usize = 1024;

/// Shortest time between two `queue_full` events of one node.
pub const QUEUE_FULL_GAP: Duration = Duration::from_secs(1);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    NodeDown,
    NodeUp,
    TableSwapped,
    TableRefused,
    QueueFull,
    DeadLetter,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::NodeDown,
        EventKind::NodeUp,
        EventKind::TableSwapped,
        EventKind::TableRefused,
        EventKind::QueueFull,
        EventKind::DeadLetter,
    ];

    /// The `event` tag and label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NodeDown => "node_down",
            EventKind::NodeUp => "node_up",
            EventKind::TableSwapped => "table_swapped",
            EventKind::TableRefused => "table_refused",
            EventKind::QueueFull => "queue_full",
            EventKind::DeadLetter => "dead_letter",
        }
    }
}

/// One event, as it becomes a `router_events` point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The node concerned, as (cluster, node), if any.
    pub node: Option<(String, String)>,
    pub message: String,
    /// Unix nanoseconds when it happened.
    pub at_ns: u64,
}

impl Event {
    pub fn new(kind: EventKind, message: impl Into<String>) -> Event {
        Event {
            kind,
            node: None,
            message: message.into(),
            at_ns: unix_ns(),
        }
    }

    /// The same event about one node.
    pub fn about(mut self, cluster: &str, node: &str) -> Event {
        self.node = Some((cluster.to_string(), node.to_string()));
        self
    }
}

/// Nanoseconds since the Unix epoch.
pub use crate::clock::unix_ns;

/// Where events go; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None` without `self_database`: events are only counted.
    tx: Option<mpsc::Sender<Event>>,
    self_database: Option<String>,
    counts: [Counter; EventKind::ALL.len()],
    dropped: Counter,
}

impl Events {
    /// The sender, and the receiver for the writer when `self_database` is set.
    pub(super) fn new(
        r: &Registrar<'_>,
        self_database: Option<&str>,
    ) -> (Events, Option<mpsc::Receiver<Event>>) {
        let (tx, rx) = match self_database {
            Some(_) => {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let counts = std::array::from_fn(|i| {
            r.counter(names::EVENTS, &[("event", EventKind::ALL[i].as_str())])
        });
        let inner = Inner {
            tx,
            self_database: self_database.map(str::to_string),
            counts,
            dropped: r.counter(names::EVENTS_DROPPED, &[]),
        };
        (
            Events {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// Counts `event` and hands it to the writer without waiting.
    pub fn emit(&self, event: Event) {
        self.inner.counts[event.kind as usize].increment(1);
        let Some(tx) = &self.inner.tx else {
            return;
        };
        if tx.try_send(event).is_err() {
            self.inner.dropped.increment(1);
        }
    }

    /// Whether `db` is where the router writes about itself.
    pub fn is_self_database(&self, db: &str) -> bool {
        self.inner.self_database.as_deref() == Some(db)
    }
}

/// Spaces out one node's `queue_full` events; see [`QUEUE_FULL_GAP`].
#[derive(Debug, Default)]
pub struct FullThrottle {
    /// Unix ms of the last event.
    last_ms: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
}

impl FullThrottle {
    /// Adds refused and dropped records; the message of the event to emit
    /// now, if one is due.
    pub fn note(&self, refused: u64, dropped: u64, now_ms: u64) -> Option<String> {
        self.refused.fetch_add(refused, Ordering::Relaxed);
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
        let last = self.last_ms.load(Ordering::Relaxed);
        let gap = QUEUE_FULL_GAP.as_millis() as u64;
        if last != 0 && now_ms.saturating_sub(last) < gap {
            return None;
        }
        self.last_ms
            .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        let refused = self.refused.swap(0, Ordering::Relaxed);
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        Some(match (refused, dropped) {
            (r, 0) => format!("queue full: {r} record(s) refused"),
            (0, d) => format!("queue full: dropped the {d} oldest record(s)"),
            (r, d) => format!("queue full: {r} record(s) refused, the {d} oldest dropped"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_full_events_come_at_most_once_per_gap_with_the_counts_between() {
        let throttle = FullThrottle::default();
        let t0 = 1_000_000;
        assert_eq!(
            throttle.note(1, 0, t0).as_deref(),
            Some("queue full: 1 record(s) refused")
        );
        assert_eq!(throttle.note(1, 0, t0 + 10), None);
        assert_eq!(throttle.note(2, 0, t0 + 999), None);
        assert_eq!(
            throttle.note(0, 5, t0 + 1000).as_deref(),
            Some("queue full: 3 record(s) refused, the 5 oldest dropped")
        );
        assert_eq!(
            throttle.note(0, 2, t0 + 2500).as_deref(),
            Some("queue full: dropped the 2 oldest record(s)")
        );
    }
}
