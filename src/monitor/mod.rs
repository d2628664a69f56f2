//! What the router tells about itself: Prometheus metrics (`GET /metrics`)
//! and self-monitoring (its statistics and events written into
//! `[metrics] self_database` through its own write path).
//!
//! * [`names`]: the name, type and meaning of every metric.
//! * [`http`]: requests by endpoint and status class, latency, bytes, lines.
//! * [`node`]: per-node requests, failures, latency, health and queue.
//! * [`events`]: node down/up, table swapped/refused, queue full, dead letter.
//! * [`process`]: resident memory and CPU time from `/proc`.
//! * [`self_monitor`]: the task that writes `router` and `router_events`.
//!
//! # One recorder per router
//!
//! Each router ([`crate::server::Shared`]) owns a [`Monitor`] with its own
//! [`PrometheusRecorder`], and every handle is registered explicitly
//! against that recorder ([`metrics::Recorder::register_counter`] and
//! friends), never through the process-global `metrics` recorder. Several
//! routers in one process — the integration tests start many — therefore
//! count each on its own, and each `/metrics` shows exactly its own counts.
//!
//! The binary runs one router per process, and [`crate::server::run`] also
//! installs that router's recorder as the process-global one
//! ([`Monitor::install_global`]), so that `metrics::counter!` and friends,
//! wherever they are called in the process, appear in its `/metrics` too.
//! Routers started in-process with [`crate::server::spawn`] do not: facade
//! calls there go to whatever global recorder the host process set (by
//! default none, and they cost nothing).
//!
//! # Cost on the request path
//!
//! Handles are created once: per endpoint and status class when the router
//! starts, per node when its [`crate::node::Node`] is built. Counting is an
//! atomic add on a handle held in a fixed array; a latency sample goes into
//! a lock-free bucket that rendering (or the upkeep task, every
//! [`UPKEEP_INTERVAL`]) folds into the histogram. No label string is built
//! and no map is searched per request.
//!
//! Gauges that mirror state — queue bytes and records, node health, the
//! routing table version — are set from the live routing table when
//! `/metrics` is rendered, not on every change; so are the process's memory
//! and CPU time.
//!
//! A node that leaves the routing table keeps its series, with their last
//! values, until the router restarts (the `metrics` crate cannot unregister).

pub mod events;
pub mod http;
pub mod names;
pub mod node;
pub mod process;
pub mod self_monitor;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::sync::{mpsc, watch};

use crate::config::{Limit, RoutingSource};
use crate::node::Node;
use events::{Event, EventKind, Events};
use names::Metric;

pub use http::{Endpoint, HttpMetrics};
pub use node::NodeMetrics;

/// How often histogram samples are folded in when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// One router's metrics: the recorder, the router-wide handles, and the
/// event channel.
pub struct Monitor {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    pub http: HttpMetrics,
    routing_version: Gauge,
    routing_swaps: Counter,
    routing_refused: Counter,
    /// Candidates read from the config file and from Redis.
    routing_reloads: [Counter; 2],
    open_connections: Gauge,
    self_write_failures: Counter,
    /// Refusals by `[limits]`, indexed by [`Limit`].
    limited: [Counter; Limit::ALL.len()],
    events: Events,
    /// The receiving end of `events`, until the self-monitoring task takes it.
    events_rx: Mutex<Option<mpsc::Receiver<Event>>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

/// Registers handles against one recorder.
pub(crate) struct Registrar<'a> {
    recorder: &'a PrometheusRecorder,
}

impl Registrar<'_> {
    fn key(metric: Metric, labels: &[(&'static str, &str)]) -> Key {
        let labels = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect::<Vec<_>>();
        Key::from_parts(metric.name, labels)
    }

    fn metadata() -> Metadata<'static> {
        Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
    }

    pub fn counter(&self, metric: Metric, labels: &[(&'static str, &str)]) -> Counter {
        let key = Self::key(metric, labels);
        self.recorder.register_counter(&key, &Self::metadata())
    }

    pub fn gauge(&self, metric: Metric, labels: &[(&'static str, &str)]) -> Gauge {
        let key = Self::key(metric, labels);
        self.recorder.register_gauge(&key, &Self::metadata())
    }

    pub fn histogram(&self, metric: Metric, labels: &[(&'static str, &str)]) -> Histogram {
        let key = Self::key(metric, labels);
        self.recorder.register_histogram(&key, &Self::metadata())
    }

    fn describe(&self, metric: Metric) {
        let (name, help) = (
            KeyName::from_const_str(metric.name),
            SharedString::const_str(metric.help),
        );
        match metric.kind {
            names::Kind::Counter => self.recorder.describe_counter(name, None, help),
            names::Kind::Gauge => self.recorder.describe_gauge(name, None, help),
            names::Kind::Histogram => self.recorder.describe_histogram(name, None, help),
        }
    }
}

impl Monitor {
    /// A new recorder with every router-wide handle registered; events go
    /// to a channel for the self-monitoring writer when there is a
    /// `self_database`.
    pub fn new(self_database: Option<&str>) -> Monitor {
        let builder = PrometheusBuilder::new()
            .set_buckets(&names::LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = Arc::new(builder.build_recorder());
        let r = Registrar {
            recorder: &recorder,
        };
        names::REGISTERED.iter().for_each(|m| r.describe(*m));
        r.gauge(names::BUILD_INFO, &[("version", crate::VERSION)])
            .set(1.0);
        let (events, events_rx) = Events::new(&r, self_database);
        Monitor {
            handle: recorder.handle(),
            http: HttpMetrics::register(&r),
            routing_version: r.gauge(names::ROUTING_VERSION, &[]),
            routing_swaps: r.counter(names::ROUTING_SWAPS, &[]),
            routing_refused: r.counter(names::ROUTING_REFUSED, &[]),
            routing_reloads: [
                r.counter(names::ROUTING_RELOADS, &[("source", "file")]),
                r.counter(names::ROUTING_RELOADS, &[("source", "redis")]),
            ],
            open_connections: r.gauge(names::OPEN_CONNECTIONS, &[]),
            self_write_failures: r.counter(names::SELF_WRITE_FAILURES, &[]),
            limited: Limit::ALL.map(|l| r.counter(names::LIMITED, &[("limit", l.as_str())])),
            events,
            events_rx: Mutex::new(events_rx),
            recorder,
        }
    }

    /// How many SRV targets of `cluster` did not resolve at its last refresh.
    pub fn srv_unresolved(&self, cluster: &str, count: usize) {
        let r = Registrar {
            recorder: &self.recorder,
        };
        r.gauge(names::SRV_UNRESOLVED, &[("cluster", cluster)])
            .set(count as f64);
    }

    /// The handles of a node's metrics (the same series for the same names).
    pub fn node(&self, cluster: &str, node: &str) -> NodeMetrics {
        let r = Registrar {
            recorder: &self.recorder,
        };
        NodeMetrics::register(&r, &self.events, cluster, node)
    }

    /// Makes this router's recorder the process-global `metrics` recorder,
    /// unless one is set already (then logs why not).
    pub fn install_global(&self) {
        if metrics::set_global_recorder(self.recorder.clone()).is_err() {
            tracing::debug!("a global metrics recorder is already installed; keeping it");
        }
    }

    /// The Prometheus text exposition, with the state gauges set from the
    /// live routing table: its `version` and its `nodes`.
    pub fn render<'a>(&self, version: u64, nodes: impl Iterator<Item = &'a Arc<Node>>) -> String {
        self.routing_version.set(version as f64);
        for node in nodes {
            let stats = node.queue().stats();
            node.metrics().set_state(node.is_healthy(), &stats);
        }
        let mut text = self.handle.render();
        text.push_str(&process::exposition());
        text
    }

    /// Folds histogram samples in every [`UPKEEP_INTERVAL`] until `stop`
    /// changes, so memory stays bounded when nobody scrapes.
    pub async fn run_upkeep(&self, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.handle.run_upkeep(),
                _ = stop.changed() => return,
            }
        }
    }

    /// Counts an open client connection until the guard is dropped.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.open_connections.increment(1.0);
        ConnectionGuard {
            gauge: self.open_connections.clone(),
        }
    }

    /// A routing table was published as `version`.
    pub fn table_swapped(&self, version: u64, origin: &str) {
        self.routing_swaps.increment(1);
        let message = format!("routing table version {version} from {origin}");
        self.events
            .emit(Event::new(EventKind::TableSwapped, message));
    }

    /// A candidate configuration was read from `source`, to be checked.
    pub fn routing_read(&self, source: RoutingSource) {
        let index = match source {
            RoutingSource::File => 0,
            RoutingSource::Redis => 1,
        };
        self.routing_reloads[index].increment(1);
    }

    /// A routing update from `origin` was refused.
    pub fn table_refused(&self, origin: &str, problems: &[String]) {
        self.routing_refused.increment(1);
        let problems = crate::protocol::response::truncate(&problems.join("; "), 1000);
        let message = format!("routing update from {origin} refused: {problems}");
        self.events
            .emit(Event::new(EventKind::TableRefused, message));
    }

    /// A request was refused (429) by `limit`.
    pub fn limited(&self, limit: Limit) {
        self.limited[limit as usize].increment(1);
    }

    /// A self-monitoring write did not meet consistency `any`.
    pub fn self_write_failed(&self) {
        self.self_write_failures.increment(1);
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The receiving end of the events, once (for the self-monitoring task).
    pub(crate) fn take_events(&self) -> Option<mpsc::Receiver<Event>> {
        self.events_rx.lock().ok()?.take()
    }
}

/// Holds one unit of the open-connections gauge.
#[derive(Debug)]
pub struct ConnectionGuard {
    gauge: Gauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}
