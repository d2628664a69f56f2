//! One InfluxDB node as the router sees it.
//!
//! A [`Node`] owns everything per node: its address, its mode, its health
//! state, its in-flight request counter, its keep-alive connections and its
//! durable queue. It carries how its connections are opened
//! ([`client::NodeClient`]): plain TCP, or its cluster's TLS connector. It
//! never decides routing: the routing table holds nodes, handlers pick
//! among them.
//!
//! * [`client`]: connecting (plain and TLS), the per-node connection pool,
//!   request sending with timeouts, and a response body that keeps the
//!   in-flight count until it is consumed.
//! * [`health`]: the active `GET /ping` checker.
//! * [`auth`]: whether the node checks credentials and which it accepted,
//!   learned from its answers.
//! * [`replay`]: the one reader of the node's queue, draining it in order
//!   while the node is healthy.

pub mod auth;
pub mod client;
pub mod health;
pub mod metrics;
pub mod replay;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::{ClusterConfig, NodeConfig, NodeMode};
use crate::queue::{AppendError, Queue, Record};

pub use client::{HttpClient, NodeClient, NodeError, NodeResponseBody};
pub use metrics::Metrics;

/// One node: address, mode, health and load.
#[derive(Debug)]
pub struct Node {
    name: String,
    cluster: String,
    mode: NodeMode,
    /// The addresses the router resolved for it (DNS SRV targets); empty
    /// when the system resolves its host.
    addrs: Vec<std::net::IpAddr>,
    /// `http://host:port` or `https://host:port`, without a trailing slash.
    base: String,
    /// How connections to this node are opened.
    client: NodeClient,
    /// This node's keep-alive connections.
    pool: client::Pool,
    /// `scheme://host:port/`, what a connection is opened to.
    connect_uri: http::Uri,
    /// The `Host` header of every request to this node.
    host: http::HeaderValue,
    /// The `X-Influxdb-Version` the node last answered a ping with (for
    /// `/status`, and stamped on the router's own answers).
    version: arc_swap::ArcSwapOption<http::HeaderValue>,
    /// Basic-auth header value built from the cluster's credentials: for
    /// health checks and control-plane work only, never a client's request.
    router_auth: Option<http::HeaderValue>,
    /// What the node's answers taught about its authentication.
    auth: auth::AuthMemory,
    healthy: AtomicBool,
    fails_in_a_row: AtomicU32,
    oks_in_a_row: AtomicU32,
    in_flight: AtomicUsize,
    queue: Queue,
    detail: Mutex<Detail>,
    metrics: Box<dyn Metrics>,
}

/// Slow-changing facts about a node, for `/status` and `/ping`.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    pub last_check_at: Option<SystemTime>,
    /// The last replay failure, cleared by a successful replay.
    pub replay_error: Option<String>,
    /// Records per second of the last replayed batch, and when it finished.
    pub replay_rate: f64,
    pub replayed_at: Option<SystemTime>,
}

impl Node {
    /// A node from its config, its opened queue, its metric handles and the
    /// client it sends through; it starts out healthy until a check says
    /// otherwise.
    pub fn new(
        cluster: &ClusterConfig,
        config: &NodeConfig,
        queue: Queue,
        metrics: Box<dyn Metrics>,
        client: NodeClient,
    ) -> Arc<Node> {
        let base = config.url.to_string();
        let authority = config.url.authority().map(|a| a.as_str()).unwrap_or("");
        let scheme = config.url.scheme_str().unwrap_or("http");
        Arc::new(Node {
            name: config.name.clone(),
            cluster: cluster.name.clone(),
            mode: config.mode,
            addrs: config.addrs.clone(),
            base: base.trim_end_matches('/').to_string(),
            client,
            pool: client::Pool::default(),
            connect_uri: format!("{scheme}://{authority}/")
                .parse()
                .unwrap_or_else(|_| config.url.clone()),
            host: http::HeaderValue::from_str(authority)
                .unwrap_or_else(|_| http::HeaderValue::from_static("localhost")),
            version: arc_swap::ArcSwapOption::empty(),
            router_auth: basic_auth(cluster),
            auth: auth::AuthMemory::default(),
            healthy: AtomicBool::new(true),
            fails_in_a_row: AtomicU32::new(0),
            oks_in_a_row: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            queue,
            detail: Mutex::new(Detail::default()),
            metrics,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The addresses the router resolved for this node (empty: the system resolves it).
    pub fn addrs(&self) -> &[std::net::IpAddr] {
        &self.addrs
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn mode(&self) -> NodeMode {
        self.mode
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The `X-Influxdb-Version` header the node last reported, if any.
    pub fn version_header(&self) -> Option<http::HeaderValue> {
        self.version.load().as_deref().cloned()
    }

    /// How connections to this node are opened.
    pub fn client(&self) -> &NodeClient {
        &self.client
    }

    pub fn router_auth(&self) -> Option<&http::HeaderValue> {
        self.router_auth.as_ref()
    }

    /// What the node's answers taught about its authentication.
    pub fn auth(&self) -> &auth::AuthMemory {
        &self.auth
    }

    /// Whether the node may hold a request with `credentials` in its queue
    /// although no node checked them (see [`auth::AuthMemory::vouches_for`]).
    pub fn vouches_for(&self, credentials: Option<&crate::config::Secret>) -> bool {
        self.auth
            .vouches_for(credentials, self.router_auth.is_some())
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The node's durable queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The node's metric handles (and where its events go).
    pub fn metrics(&self) -> &dyn Metrics {
        self.metrics.as_ref()
    }

    /// Whether new work must go through the queue to keep the node's order:
    /// it has a backlog, or it is known to be down.
    pub fn must_queue(&self) -> bool {
        !self.queue.is_empty() || !self.is_healthy()
    }

    /// A copy of the slow-changing details.
    pub fn detail(&self) -> Detail {
        self.detail.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Records an error seen while talking to the node (not a health verdict).
    pub fn note_error(&self, message: &str) {
        self.update_detail(|detail| {
            detail.last_error = Some(message.to_string());
            detail.last_error_at = Some(SystemTime::now());
        });
    }

    /// Puts `record` in the node's queue because it cannot be delivered now;
    /// `reason` says why when a direct attempt failed. When the queue refuses
    /// it too, the message names both and is noted as the node's last error.
    pub async fn hint(&self, record: Record, reason: Option<&str>) -> Result<(), String> {
        if let Some(reason) = reason {
            self.note_error(reason);
        }
        let bytes = record.encoded_len();
        let appended = self.queue.append(record).await;
        let refused = u64::from(matches!(appended, Err(AppendError::Full { .. })));
        let dropped = self.queue.take_drops();
        if refused + dropped > 0 {
            self.metrics.queue_full(refused, dropped);
        }
        match appended {
            Ok(()) => {
                self.metrics.appended(bytes);
                Ok(())
            }
            Err(e) => {
                let message = match reason {
                    Some(reason) => format!("{reason}; and not queued: {e}"),
                    None => format!("not queued: {e}"),
                };
                self.note_error(&message);
                Err(message)
            }
        }
    }

    /// Changes the slow-changing details.
    pub fn update_detail(&self, change: impl FnOnce(&mut Detail)) {
        if let Ok(mut detail) = self.detail.lock() {
            change(&mut detail);
        }
    }

    /// Counts one request as outstanding until the guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { node: self.clone() }
    }
}

/// What a request to a node is for: the `kind` label of its metrics.
///
/// Every caller of [`Node::send`] says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A client's write, sent on directly.
    Write,
    /// A client's read.
    Query,
    /// An administrative statement broadcast to the node.
    Admin,
    /// A queued write or statement replayed.
    Replay,
    /// A health check.
    Health,
}

impl RequestKind {
    pub const ALL: [RequestKind; 5] = [
        RequestKind::Write,
        RequestKind::Query,
        RequestKind::Admin,
        RequestKind::Replay,
        RequestKind::Health,
    ];

    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Write => "write",
            RequestKind::Query => "query",
            RequestKind::Admin => "admin",
            RequestKind::Replay => "replay",
            RequestKind::Health => "health",
        }
    }
}

/// Holds one unit of a node's in-flight count.
#[derive(Debug)]
pub struct InFlight {
    node: Arc<Node>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.node.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn basic_auth(cluster: &ClusterConfig) -> Option<http::HeaderValue> {
    let user = cluster.username.as_deref()?;
    let pass = cluster.password.as_ref().map(|p| p.expose()).unwrap_or("");
    let token = base64(format!("{user}:{pass}").as_bytes());
    let mut value = http::HeaderValue::from_str(&format!("Basic {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Standard base64 with padding (for Basic auth headers); small enough not to need a crate.
pub fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A node `a` of cluster `c` at `url`, its queue in `dir`, for unit tests.
#[cfg(test)]
pub(crate) fn test_node(url: &str, dir: &std::path::Path) -> Arc<Node> {
    use crate::config::{FsyncPolicy, OnFull};
    use crate::queue::QueueConfig;
    let queue_config = QueueConfig::new(1 << 20, OnFull::Reject, FsyncPolicy::Never);
    test_node_with(url, Queue::open(dir, queue_config).unwrap())
}

/// A node `a` of cluster `c` at `url` with `queue`, for unit tests.
#[cfg(test)]
pub(crate) fn test_node_with(url: &str, queue: Queue) -> Arc<Node> {
    let config = NodeConfig {
        name: "a".into(),
        url: url.parse().unwrap(),
        mode: NodeMode::ReadWrite,
        addrs: Vec::new(),
    };
    let cluster = ClusterConfig {
        name: "c".into(),
        username: None,
        password: None,
        nodes: vec![config.clone()],
        srv: None,
        tls: Default::default(),
        read_url: None,
    };
    Node::new(
        &cluster,
        &config,
        queue,
        Box::new(metrics::Unmetered),
        NodeClient::Plain(client::build(&Default::default())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(n: u64) -> Record {
        Record {
            kind: crate::queue::RecordKind::Write,
            accepted_at_ms: n,
            db: "db".into(),
            rp: String::new(),
            precision: String::new(),
            gzip: false,
            auth: None,
            body: crate::payload::Payload::from(bytes::Bytes::from(format!("m v={n} {n}\n"))),
        }
    }

    #[tokio::test]
    async fn a_node_whose_queue_drained_on_a_full_disk_takes_writes_directly_again() {
        use crate::config::{FsyncPolicy, OnFull};
        use crate::queue::{FaultFs, QueueConfig};
        let dir = tempfile::TempDir::new().unwrap();
        let fs = FaultFs::new();
        let config = QueueConfig::new(1 << 20, OnFull::Reject, FsyncPolicy::Batch);
        let queue = Queue::open_with(dir.path(), config, Arc::new(fs.clone())).unwrap();
        let node = test_node_with("http://127.0.0.1:1", queue);
        node.hint(write(1), Some("connection refused"))
            .await
            .unwrap();
        assert!(node.must_queue());
        fs.fill_disk(true);
        let refused = node.hint(write(2), None).await.unwrap_err();
        assert!(refused.contains("No space left"), "{refused}");
        // what the replayer does once the node took the batch
        let batch = node.queue().peek_batch(1 << 20, 100).unwrap();
        node.queue().commit(batch.last().unwrap().0).unwrap();
        assert!(node.is_healthy());
        assert!(!node.must_queue(), "nothing queued: writes go direct again");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected);
        }
        assert_eq!(base64(b"router:secret"), "cm91dGVyOnNlY3JldA==");
    }
}
