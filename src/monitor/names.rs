//! The name, type and meaning of every metric the router exports.
//!
//! Names follow Prometheus conventions: the `influxdb_router_` prefix,
//! `_total` on counters, base units (`_seconds`, `_bytes`) in the name.
//! Labels only ever take values from bounded sets: endpoint, status class,
//! request kind, event, limit, and the cluster and node names of the
//! configuration.

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn metric(name: &'static str, kind: Kind, help: &'static str) -> Metric {
    Metric { name, kind, help }
}

pub const HTTP_REQUESTS: Metric = metric(
    "influxdb_router_http_requests_total",
    Kind::Counter,
    "HTTP requests answered, by endpoint and status class",
);
pub const HTTP_DURATION: Metric = metric(
    "influxdb_router_http_request_duration_seconds",
    Kind::Histogram,
    "Time from request head to response head, by endpoint",
);
pub const HTTP_RECEIVED: Metric = metric(
    "influxdb_router_http_received_bytes_total",
    Kind::Counter,
    "Request body bytes received (as sent, gzip or not), by endpoint",
);
pub const HTTP_SENT: Metric = metric(
    "influxdb_router_http_sent_bytes_total",
    Kind::Counter,
    "Response body bytes sent to clients, by endpoint",
);
pub const WRITE_LINES: Metric = metric(
    "influxdb_router_write_lines_total",
    Kind::Counter,
    "Lines received in uncompressed /write and /api/v2/write bodies",
);
pub const OPEN_CONNECTIONS: Metric = metric(
    "influxdb_router_open_connections",
    Kind::Gauge,
    "Client connections open now",
);
pub const NODE_REQUESTS: Metric = metric(
    "influxdb_router_node_requests_total",
    Kind::Counter,
    "Requests sent to a node, by kind (write, query, admin, replay, health)",
);
pub const NODE_FAILURES: Metric = metric(
    "influxdb_router_node_failures_total",
    Kind::Counter,
    "Requests to a node that failed: no connection, timeout or 5xx",
);
pub const NODE_DURATION: Metric = metric(
    "influxdb_router_node_request_duration_seconds",
    Kind::Histogram,
    "Time from sending a request to a node to its response head",
);
pub const NODE_SENT: Metric = metric(
    "influxdb_router_node_sent_bytes_total",
    Kind::Counter,
    "Request body bytes sent to a node",
);
pub const NODE_HEALTHY: Metric = metric(
    "influxdb_router_node_healthy",
    Kind::Gauge,
    "1 while the health checker considers the node healthy, else 0",
);
pub const QUEUE_BYTES: Metric = metric(
    "influxdb_router_queue_bytes",
    Kind::Gauge,
    "Bytes of queued records not yet replayed to the node",
);
pub const QUEUE_DISK_BYTES: Metric = metric(
    "influxdb_router_queue_disk_bytes",
    Kind::Gauge,
    "Bytes of the node's queue segment files (what max_size_per_node bounds)",
);
pub const QUEUE_RECORDS: Metric = metric(
    "influxdb_router_queue_records",
    Kind::Gauge,
    "Queued records not yet replayed to the node",
);
pub const QUEUE_APPENDED_RECORDS: Metric = metric(
    "influxdb_router_queue_appended_records_total",
    Kind::Counter,
    "Records appended to the node's queue",
);
pub const QUEUE_APPENDED_BYTES: Metric = metric(
    "influxdb_router_queue_appended_bytes_total",
    Kind::Counter,
    "Bytes of records appended to the node's queue",
);
pub const QUEUE_REPLAYED_RECORDS: Metric = metric(
    "influxdb_router_queue_replayed_records_total",
    Kind::Counter,
    "Queued records the node accepted on replay",
);
pub const QUEUE_REPLAYED_BYTES: Metric = metric(
    "influxdb_router_queue_replayed_bytes_total",
    Kind::Counter,
    "Bytes of queued records the node accepted on replay",
);
pub const QUEUE_DEAD_LETTERS: Metric = metric(
    "influxdb_router_queue_dead_letters_total",
    Kind::Counter,
    "Queued records the node rejected (4xx), moved to the dead-letter file",
);
pub const QUEUE_DROPPED: Metric = metric(
    "influxdb_router_queue_dropped_records_total",
    Kind::Counter,
    "Queued records dropped to make room (on_full = drop-oldest)",
);
pub const QUEUE_REJECTED: Metric = metric(
    "influxdb_router_queue_rejected_records_total",
    Kind::Counter,
    "Records the full queue refused (on_full = reject)",
);
pub const QUEUE_POSITION_STALE: Metric = metric(
    "influxdb_router_queue_position_stale",
    Kind::Gauge,
    "1 while the queue's read position cannot be stored on disk (replay goes on from memory)",
);
pub const ROUTING_VERSION: Metric = metric(
    "influxdb_router_routing_table_version",
    Kind::Gauge,
    "Version of the routing table in force",
);
pub const ROUTING_SWAPS: Metric = metric(
    "influxdb_router_routing_table_swaps_total",
    Kind::Counter,
    "Routing tables published after start",
);
pub const ROUTING_REFUSED: Metric = metric(
    "influxdb_router_routing_updates_refused_total",
    Kind::Counter,
    "Routing updates refused as invalid (the last good table stayed)",
);
pub const SRV_UNRESOLVED: Metric = metric(
    "influxdb_router_srv_unresolved_targets",
    Kind::Gauge,
    "SRV targets of a cluster left out at the last refresh because their host did not resolve",
);
pub const ROUTING_RELOADS: Metric = metric(
    "influxdb_router_routing_reloads_total",
    Kind::Counter,
    "Routing configurations read and checked, by source (file or redis)",
);
pub const LIMITED: Metric = metric(
    "influxdb_router_limited_total",
    Kind::Counter,
    "Requests refused with 429 by a [limits] limit, by limit",
);
pub const EVENTS: Metric = metric(
    "influxdb_router_events_total",
    Kind::Counter,
    "Events for self-monitoring, by event",
);
pub const EVENTS_DROPPED: Metric = metric(
    "influxdb_router_events_dropped_total",
    Kind::Counter,
    "Events not written to self_database because its writer was behind",
);
pub const SELF_WRITE_FAILURES: Metric = metric(
    "influxdb_router_self_write_failures_total",
    Kind::Counter,
    "Self-monitoring writes that did not meet consistency any",
);
pub const BUILD_INFO: Metric = metric(
    "influxdb_router_build_info",
    Kind::Gauge,
    "Always 1; the label carries the router's version",
);
/// Rendered from `/proc` at scrape time (see `super::process`).
pub const PROCESS_RESIDENT_MEMORY: Metric = metric(
    "influxdb_router_process_resident_memory_bytes",
    Kind::Gauge,
    "Resident memory of the router process",
);
/// Rendered from `/proc` at scrape time (see `super::process`).
pub const PROCESS_CPU: Metric = metric(
    "influxdb_router_process_cpu_seconds_total",
    Kind::Counter,
    "User and system CPU time of the router process",
);

/// Every metric registered with the recorder (the process ones are rendered apart).
pub const REGISTERED: [Metric; 32] = [
    HTTP_REQUESTS,
    HTTP_DURATION,
    HTTP_RECEIVED,
    HTTP_SENT,
    WRITE_LINES,
    OPEN_CONNECTIONS,
    NODE_REQUESTS,
    NODE_FAILURES,
    NODE_DURATION,
    NODE_SENT,
    NODE_HEALTHY,
    QUEUE_BYTES,
    QUEUE_DISK_BYTES,
    QUEUE_RECORDS,
    QUEUE_APPENDED_RECORDS,
    QUEUE_APPENDED_BYTES,
    QUEUE_REPLAYED_RECORDS,
    QUEUE_REPLAYED_BYTES,
    QUEUE_DEAD_LETTERS,
    QUEUE_DROPPED,
    QUEUE_REJECTED,
    QUEUE_POSITION_STALE,
    ROUTING_VERSION,
    ROUTING_SWAPS,
    ROUTING_REFUSED,
    ROUTING_RELOADS,
    SRV_UNRESOLVED,
    LIMITED,
    EVENTS,
    EVENTS_DROPPED,
    SELF_WRITE_FAILURES,
    BUILD_INFO,
];

/// Upper bounds (seconds) of the latency histogram buckets: 100 µs to 60 s.
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 60.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let all = REGISTERED
            .iter()
            .chain([PROCESS_RESIDENT_MEMORY, PROCESS_CPU].iter());
        let mut seen = std::collections::HashSet::new();
        for m in all {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("influxdb_router_"), "{}", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.name.ends_with("_total"),
                m.kind == Kind::Counter,
                "{}: counters and only counters end in _total",
                m.name
            );
        }
    }
}
