//! Self-monitoring (SPEC §9): with `[metrics] self_database` set, the router
//! writes its statistics every `self_interval` (measurement `router`) and
//! its events as they happen (measurement `router_events`) into that
//! database, through the router's own write path like any client write —
//! so the points are replicated to every node and queued for nodes that are
//! down. The router it runs in is given to it as a value, a [`Router`]
//! (the server implements it): this module never reaches up into the
//! server.
//!
//! Before the first write it creates the database with `CREATE DATABASE`
//! through the admin broadcast ([`Router::statement`]), which queues the
//! statement for nodes that are down, ahead of the points; it does so again
//! after a write is answered 404 (someone dropped the database).
//!
//! Points (tag values escaped; integers with `i`):
//!
//! ```text
//! router,host=H requests=…i,requests_5xx=…i,received_bytes=…i,…,uptime_seconds=…
//! router,cluster=C,host=H,node=N healthy=true,queue_bytes=…i,queue_records=…i,requests=…i,failures=…i
//! router_events,cluster=C,event=node_down,host=H,node=N message="ping failed: …"
//! ```
//!
//! The statistics are read from the same exposition `/metrics` renders, so
//! the two always agree. Events are written in small batches: the first
//! event waits at most [`EVENT_BATCH_DELAY`] for others to join it. This
//! task never produces events itself; for why writing events cannot feed
//! on itself, see [`super::events`].

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::events::{unix_ns, Event};
use super::Monitor;
use crate::config::MetricsConfig;
use crate::node::Node;

/// What self-monitoring needs of the router it runs in.
pub trait Router: Send + Sync + 'static {
    /// The router's metrics (rendered into the statistics).
    fn monitor(&self) -> &Monitor;
    /// The version of the routing table in force, and its nodes.
    fn nodes(&self) -> (u64, Vec<Arc<Node>>);
    /// How long the router has been running.
    fn uptime(&self) -> Duration;
    /// Writes line protocol into `db` through the router's write path at
    /// consistency `any`: the answer's status, or why there was none.
    fn write(&self, db: &str, body: Bytes) -> BoxFuture<'_, Result<http::StatusCode, String>>;
    /// Broadcasts the router's own admin statement `q` to every node.
    fn statement(&self, q: &str) -> BoxFuture<'_, Statement>;
}

/// What became of a statement broadcast by [`Router::statement`].
#[derive(Debug)]
pub enum Statement {
    /// The nodes answered with this status.
    Answered(http::StatusCode),
    /// No node could apply it now; it waits in their queues.
    Queued(String),
    Failed(String),
}

/// How long the first event of a batch waits for others.
pub const EVENT_BATCH_DELAY: Duration = Duration::from_millis(50);

/// Most events written in one request.
const EVENT_BATCH_MAX: usize = 256;

/// Starts the task when `self_database` is set; it ends when `stop` changes.
pub fn start(
    router: Arc<dyn Router>,
    config: &MetricsConfig,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let db = config.self_database.clone()?;
    let events = router.monitor().take_events()?;
    let writer = Writer {
        router,
        db,
        created: false,
        failing: false,
    };
    Some(tokio::spawn(run(
        writer,
        events,
        config.self_interval,
        stop,
    )))
}

async fn run(
    mut writer: Writer,
    mut events: mpsc::Receiver<Event>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let host = hostname();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(database = %writer.db, ?interval, %host, "self-monitoring started");
    loop {
        let body = tokio::select! {
            _ = ticker.tick() => statistics(writer.router.as_ref(), &host, unix_ns()),
            Some(first) = events.recv() => event_lines(&host, &gather(first, &mut events).await),
            _ = stop.changed() => return,
        };
        writer.write(body).await;
    }
}

/// `first` and the events that arrive within [`EVENT_BATCH_DELAY`].
async fn gather(first: Event, events: &mut mpsc::Receiver<Event>) -> Vec<Event> {
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + EVENT_BATCH_DELAY;
    while batch.len() < EVENT_BATCH_MAX {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => batch.push(event),
            Ok(None) | Err(_) => break,
        }
    }
    batch
}

/// Writes points into `db`, creating it first.
struct Writer {
    router: Arc<dyn Router>,
    db: String,
    created: bool,
    /// The last write failed (logged once until one succeeds).
    failing: bool,
}

impl Writer {
    async fn write(&mut self, body: String) {
        if !self.created {
            self.create_database().await;
        }
        let problem = match self.router.write(&self.db, Bytes::from(body)).await {
            Ok(status) if status.is_success() => None,
            Ok(status) => {
                if status == http::StatusCode::NOT_FOUND {
                    self.created = false;
                }
                Some(format!("answered {status}"))
            }
            Err(e) => Some(e),
        };
        self.report(problem);
    }

    fn report(&mut self, problem: Option<String>) {
        match problem {
            None if self.failing => {
                tracing::info!(database = %self.db, "self-monitoring writes succeed again");
                self.failing = false;
            }
            None => {}
            Some(problem) => {
                self.router.monitor().self_write_failed();
                if !self.failing {
                    tracing::warn!(database = %self.db, %problem, "self-monitoring write failed");
                }
                self.failing = true;
            }
        }
    }

    /// `CREATE DATABASE`; a statement queued for every node counts as done.
    async fn create_database(&mut self) {
        let q = format!("CREATE DATABASE {}", quote_ident(&self.db));
        match self.router.statement(&q).await {
            Statement::Answered(status) if status.is_success() => self.created = true,
            Statement::Answered(status) => {
                tracing::warn!(database = %self.db, %status, "cannot create the self-monitoring database")
            }
            Statement::Queued(message) => {
                tracing::info!(database = %self.db, %message, "self-monitoring database: CREATE DATABASE queued");
                self.created = true;
            }
            Statement::Failed(e) => {
                tracing::warn!(database = %self.db, error = %e, "cannot create the self-monitoring database")
            }
        }
    }
}

/// The `router` points: one for the router, one per node of the live table.
fn statistics(router: &dyn Router, host: &str, now_ns: u64) -> String {
    let (version, nodes) = router.nodes();
    let text = router.monitor().render(version, nodes.iter());
    let sum = |name: &str| sum_samples(&text, name, |_| true) as u64;
    let mut fields = Fields::default();
    fields.int("requests", sum("influxdb_router_http_requests_total"));
    let errors = sum_samples(&text, "influxdb_router_http_requests_total", |labels| {
        labels.contains("status=\"5xx\"")
    });
    fields.int("requests_5xx", errors as u64);
    for (field, metric) in ROUTER_FIELDS {
        fields.int(field, sum(metric));
    }
    let stats: Vec<_> = nodes.iter().map(|n| n.queue().stats()).collect();
    fields.int("queue_bytes", stats.iter().map(|s| s.pending_bytes).sum());
    fields.int("queue_records", stats.iter().map(|s| s.records).sum());
    fields.int("nodes", nodes.len() as u64);
    let healthy = nodes.iter().filter(|n| n.is_healthy()).count();
    fields.int("nodes_healthy", healthy as u64);
    fields.int("routing_version", version);
    if let Some(usage) = super::process::usage() {
        fields.int("resident_memory_bytes", usage.resident_bytes);
        fields.float("cpu_seconds", usage.cpu_seconds);
    }
    fields.float("uptime_seconds", router.uptime().as_secs_f64());
    let mut out = format!("router,host={} {} {now_ns}\n", tag(host), fields.0);
    for (node, stats) in nodes.iter().zip(&stats) {
        let labelled = |labels: &str| {
            labels.contains(&format!("cluster=\"{}\"", node.cluster()))
                && labels.contains(&format!("node=\"{}\"", node.name()))
        };
        let mut fields = Fields::default();
        fields.bool("healthy", node.is_healthy());
        fields.int("queue_bytes", stats.pending_bytes);
        fields.int("queue_records", stats.records);
        let requests = sum_samples(&text, "influxdb_router_node_requests_total", labelled);
        fields.int("requests", requests as u64);
        let failures = sum_samples(&text, "influxdb_router_node_failures_total", labelled);
        fields.int("failures", failures as u64);
        let _ = writeln!(
            out,
            "router,cluster={},host={},node={} {} {now_ns}",
            tag(node.cluster()),
            tag(host),
            tag(node.name()),
            fields.0
        );
    }
    out
}

/// Fields of the router-wide point that are the sum of one metric's series.
const ROUTER_FIELDS: [(&str, &str); 16] = [
    (
        "received_bytes",
        "influxdb_router_http_received_bytes_total",
    ),
    ("sent_bytes", "influxdb_router_http_sent_bytes_total"),
    ("write_lines", "influxdb_router_write_lines_total"),
    ("open_connections", "influxdb_router_open_connections"),
    ("node_requests", "influxdb_router_node_requests_total"),
    ("node_failures", "influxdb_router_node_failures_total"),
    ("node_sent_bytes", "influxdb_router_node_sent_bytes_total"),
    (
        "queue_appended",
        "influxdb_router_queue_appended_records_total",
    ),
    (
        "queue_replayed",
        "influxdb_router_queue_replayed_records_total",
    ),
    (
        "queue_dead_letters",
        "influxdb_router_queue_dead_letters_total",
    ),
    (
        "queue_dropped",
        "influxdb_router_queue_dropped_records_total",
    ),
    (
        "queue_rejected",
        "influxdb_router_queue_rejected_records_total",
    ),
    ("routing_swaps", "influxdb_router_routing_table_swaps_total"),
    (
        "routing_refused",
        "influxdb_router_routing_updates_refused_total",
    ),
    ("events", "influxdb_router_events_total"),
    ("events_dropped", "influxdb_router_events_dropped_total"),
];

/// The `router_events` points of `events`, each at its own time (moved on
/// by a nanosecond when two would share one).
fn event_lines(host: &str, events: &[Event]) -> String {
    let mut out = String::new();
    let mut last_ns = 0;
    for event in events {
        let at = event.at_ns.max(last_ns + 1);
        last_ns = at;
        let _ = write!(out, "router_events");
        if let Some((cluster, _)) = &event.node {
            let _ = write!(out, ",cluster={}", tag(cluster));
        }
        let _ = write!(out, ",event={},host={}", event.kind.as_str(), tag(host));
        if let Some((_, node)) = &event.node {
            let _ = write!(out, ",node={}", tag(node));
        }
        let _ = writeln!(out, " message={} {at}", string_field(&event.message));
    }
    out
}

/// The sum of the samples of `name` (exactly; not its `_bucket`s and such)
/// whose label text (between the braces) passes `labels`, in a Prometheus
/// text exposition.
fn sum_samples(text: &str, name: &str, labels: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(inner) => inner.rsplit_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels(label_text).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// A line-protocol field set being built.
#[derive(Debug, Default)]
struct Fields(String);

impl Fields {
    fn sep(&mut self) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
    }

    fn int(&mut self, key: &str, value: u64) {
        self.sep();
        let _ = write!(self.0, "{key}={value}i");
    }

    fn float(&mut self, key: &str, value: f64) {
        self.sep();
        // `{:?}` always has a decimal point or exponent, so it stays a float
        let _ = write!(self.0, "{key}={value:?}");
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.sep();
        let _ = write!(self.0, "{key}={value}");
    }
}

/// A tag value with line protocol's special characters escaped (line
/// breaks, which cannot be escaped, become spaces).
fn tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    if out.is_empty() || out.ends_with('\\') {
        out.push('_');
    }
    out
}

/// A quoted string field value.
fn string_field(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `"name"` with `"` and `\` escaped, for InfluxQL.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// This machine's host name (`unknown` when it cannot be read).
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            let name = std::fs::read_to_string(path).ok()?;
            Some(name.trim().to_string()).filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::super::events::EventKind;
    use super::*;
    use crate::protocol::line;

    const EXPOSITION: &str = "\
# TYPE influxdb_router_http_requests_total counter
influxdb_router_http_requests_total{endpoint=\"write\",status=\"2xx\"} 7
influxdb_router_http_requests_total{endpoint=\"query\",status=\"5xx\"} 2
influxdb_router_http_requests_total_other 100
influxdb_router_write_lines_total 12
influxdb_router_node_request_duration_seconds_bucket{cluster=\"main\",node=\"a\",le=\"0.1\"} 3
influxdb_router_node_request_duration_seconds_sum{cluster=\"main\",node=\"a\"} 0.25
";

    #[test]
    fn samples_are_summed_by_exact_name_and_label_filter() {
        let all = |_: &str| true;
        assert_eq!(
            sum_samples(EXPOSITION, "influxdb_router_http_requests_total", all),
            9.0
        );
        let five = |l: &str| l.contains("status=\"5xx\"");
        assert_eq!(
            sum_samples(EXPOSITION, "influxdb_router_http_requests_total", five),
            2.0
        );
        assert_eq!(
            sum_samples(EXPOSITION, "influxdb_router_write_lines_total", all),
            12.0
        );
        let duration = "influxdb_router_node_request_duration_seconds";
        assert_eq!(sum_samples(EXPOSITION, duration, all), 0.0);
        assert_eq!(sum_samples(EXPOSITION, "nothing", all), 0.0);
    }

    #[test]
    fn tag_values_and_strings_are_escaped() {
        assert_eq!(tag("web 1,a=b"), "web\\ 1\\,a\\=b");
        assert_eq!(tag(""), "_");
        assert_eq!(tag("ends\\"), "ends\\_");
        assert_eq!(
            string_field("say \"hi\"\nC:\\"),
            "\"say \\\"hi\\\" C:\\\\\""
        );
        assert_eq!(quote_ident("my \"db\""), "\"my \\\"db\\\"\"");
    }

    #[test]
    fn event_points_are_valid_line_protocol_with_distinct_times() {
        let mut down =
            Event::new(EventKind::NodeDown, "ping failed: \"refused\"").about("main", "a b");
        down.at_ns = 5;
        let mut swapped = Event::new(EventKind::TableSwapped, "routing table version 2");
        swapped.at_ns = 5;
        let text = event_lines("host,1", &[down, swapped]);
        assert_eq!(
            text,
            "router_events,cluster=main,event=node_down,host=host\\,1,node=a\\ b message=\"ping failed: \\\"refused\\\"\" 5\n\
             router_events,event=table_swapped,host=host\\,1 message=\"routing table version 2\" 6\n"
        );
        let parsed: Vec<_> = line::lines(text.as_bytes()).collect();
        assert_eq!(parsed.len(), 2);
        assert!(parsed.iter().all(|l| l.is_ok()), "{parsed:?}");
    }

    #[test]
    fn fields_keep_their_types() {
        let mut fields = Fields::default();
        fields.int("n", 3);
        fields.float("f", 2.0);
        fields.bool("b", false);
        assert_eq!(fields.0, "n=3i,f=2.0,b=false");
    }

    #[test]
    fn the_host_name_is_never_empty() {
        assert!(!hostname().is_empty());
    }
}
