//! The router's configuration: where it comes from, what it may say, and
//! the checked, typed [`Config`] the rest of the router reads.
//!
//! Lookup order: `--config PATH`, else `$INFLUXDB_ROUTER_CONFIG`, else the
//! [`EMBEDDED_DEFAULT`]. Text goes through three steps, one submodule each:
//! `raw` (TOML to loosely typed structs, unknown keys refused), then
//! `validate`, `nodes` and `routes` (defaults, conversions and rules), with
//! `units` for durations and sizes. Every problem found is collected into
//! one [`ConfigError`] naming file, key and what is wrong.

mod error;
pub mod glob;
mod nodes;
mod raw;
mod routes;
mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use error::{ConfigError, Problem};
pub use units::{parse_byte_rate, parse_duration, parse_rate, parse_size};

use error::Problems;

use glob::Glob;

/// The configuration used when no file is given: listen on `0.0.0.0:5096`
/// and relay to one local InfluxDB at `http://127.0.0.1:8086`.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// The environment variable naming a config file when `--config` is absent.
pub const CONFIG_ENV: &str = "INFLUXDB_ROUTER_CONFIG";

/// Where queues live when `[buffer] dir` is not set.
pub const DEFAULT_BUFFER_DIR: &str = "/var/lib/influxdb-router";

/// The name problems in [`EMBEDDED_DEFAULT`] are reported under.
pub const EMBEDDED_ORIGIN: &str = "embedded default";

/// The whole configuration, after defaults are applied and validation passed.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub write: WriteConfig,
    pub health: HealthConfig,
    pub buffer: BufferConfig,
    pub routing: RoutingConfig,
    pub clusters: Vec<ClusterConfig>,
    /// `[[route]]`s in file order: the first that matches decides.
    pub routes: Vec<RouteConfig>,
    /// `[[move]]`s: data on its way from one cluster to another.
    pub moves: Vec<MoveConfig>,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub control: ControlConfig,
    pub limits: LimitsConfig,
}

/// `[limits]`: rate limits on clients, users and databases; every one is
/// off unless set. Rates are per second, with a burst of one second's worth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Requests per second per client address.
    pub client_requests: Option<u64>,
    /// Request body bytes (after gzip decoding) per second per client address.
    pub client_bytes: Option<u64>,
    /// Request body bytes per second per authenticated user.
    pub user_bytes: Option<u64>,
    /// Request body bytes per second per database glob, in the order
    /// written: the first glob that matches a request's database decides,
    /// and every database it matches shares its allowance.
    pub database_bytes: Vec<(Glob, u64)>,
    /// Concurrent queries per client address.
    pub client_queries: Option<u32>,
}

impl LimitsConfig {
    /// Whether no limit is set.
    pub fn is_off(&self) -> bool {
        *self == LimitsConfig::default()
    }

    /// The limits set, on one line: `client_requests 2000/s, …`, or `off`.
    pub fn describe(&self) -> String {
        let rate =
            |key: &str, value: Option<u64>, unit: &str| value.map(|v| format!("{key} {v}{unit}/s"));
        let databases = self
            .database_bytes
            .iter()
            .map(|(glob, rate)| format!("database_bytes {:?} {rate}B/s", glob.as_str()));
        let all: Vec<String> = [
            rate("client_requests", self.client_requests, ""),
            rate("client_bytes", self.client_bytes, "B"),
            rate("user_bytes", self.user_bytes, "B"),
        ]
        .into_iter()
        .flatten()
        .chain(databases)
        .chain(self.client_queries.map(|n| format!("client_queries {n}")))
        .collect();
        match all.is_empty() {
            true => "off".to_owned(),
            false => all.join(", "),
        }
    }
}

/// One kind of `[limits]` limit: the key that sets it, and the `limit`
/// label of `influxdb_router_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    ClientRequests,
    ClientBytes,
    UserBytes,
    DatabaseBytes,
    ClientQueries,
}

impl Limit {
    pub const ALL: [Limit; 5] = [
        Limit::ClientRequests,
        Limit::ClientBytes,
        Limit::UserBytes,
        Limit::DatabaseBytes,
        Limit::ClientQueries,
    ];

    /// The key under `[limits]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::ClientRequests => "client_requests",
            Limit::ClientBytes => "client_bytes",
            Limit::UserBytes => "user_bytes",
            Limit::DatabaseBytes => "database_bytes",
            Limit::ClientQueries => "client_queries",
        }
    }
}

/// `[control]`: the job queue of the control plane (SPEC section 8).
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// A node that newly appears in a cluster is write-only until a
    /// recover-node job for it is done.
    pub auto_recover: bool,
    /// A dead worker's node lock expires after this.
    pub job_lock_ttl: Duration,
    /// A failing job is tried this many times, with backoff, then marked failed.
    pub max_attempts: u32,
}

/// `[server]`: the listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub max_body_size: u64,
    pub read_timeout: Duration,
    pub max_connections: usize,
    /// How long in-flight requests may finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// `udp_bind` and `udp_database`: line protocol datagrams, when set.
    pub udp: Option<UdpConfig>,
    /// `tls_cert` and `tls_key`: serve HTTPS instead of HTTP, when set.
    pub tls: Option<ServerTlsConfig>,
}

/// The UDP line-protocol input.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    pub bind: SocketAddr,
    /// Every datagram is written to this database (default `udp`).
    pub database: String,
}

/// The PEM certificate chain and private key of the HTTPS listener.
#[derive(Debug, Clone)]
pub struct ServerTlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[metrics]`: Prometheus exposition and self-monitoring.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` on the main listener (default true).
    pub prometheus: bool,
    /// Write the router's own statistics and events into this database.
    pub self_database: Option<String>,
    /// How often statistics are written to `self_database` (default 10s).
    pub self_interval: Duration,
}

/// `[log]`: what is logged and how.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A `tracing` filter like `info` or `influxdb_router=debug`; `RUST_LOG`
    /// overrides it.
    pub level: String,
    pub format: LogFormat,
}

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` pairs after the time, level and message (the default).
    Text,
    /// One JSON object per line.
    Json,
}

/// `[write]`: how writes are replicated.
#[derive(Debug, Clone)]
pub struct WriteConfig {
    pub consistency: Consistency,
    pub timeout: Duration,
    /// Merging of small concurrent writes; `None` when `coalesce_delay` is 0
    /// (the default).
    pub coalesce: Option<CoalesceConfig>,
}

/// `coalesce_delay` and `coalesce_max_bytes`: small writes for the same node,
/// database, retention policy, precision and credentials that arrive while a
/// request for them is in flight are sent as one request of at most
/// `max_bytes`, at most `delay` after the first of them arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceConfig {
    pub delay: Duration,
    pub max_bytes: u64,
}

/// How many write-enabled nodes must accept a write before it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Any,
    One,
    Quorum,
    All,
}

/// `[health]`: the active health checker.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
}

/// `[buffer]`: the durable per-node write queues (hinted handoff).
#[derive(Debug, Clone)]
pub struct BufferConfig {
    /// Queues live in `<dir>/<cluster>/<node>/`.
    pub dir: PathBuf,
    pub max_size_per_node: u64,
    pub on_full: OnFull,
    pub fsync: FsyncPolicy,
    /// First delay after a failed replay; it doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

/// What a full queue does with a new record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// The record is refused: the node does not get it, and the write fails
    /// if its consistency level can no longer be met.
    Reject,
    /// Whole oldest records are dropped (and counted) to make room.
    DropOldest,
}

/// When queue appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every record is fsynced on its own before it counts as queued.
    Always,
    /// Records count as queued after an fsync shared by everything appended
    /// meanwhile (group commit).
    Batch,
    /// Written to the operating system only; a power cut may lose records.
    Never,
}

/// `[routing]`: which cluster serves requests that name none.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub default_cluster: String,
    /// Reload the routing table when the config file changes (and on SIGHUP).
    pub watch: bool,
    /// DNS servers for SRV discovery; empty means the system resolver configuration.
    pub dns_servers: Vec<SocketAddr>,
    /// Where the routing table comes from.
    pub source: RoutingSource,
    /// Redis holding the routing document (`source = "redis"`), node mode
    /// overrides and router receipts.
    pub redis_url: String,
    /// Whether `redis_url` was given (or `source = "redis"`): only then does
    /// the router follow node mode overrides in Redis and report receipts.
    pub redis_url_set: bool,
    /// Prefix of the Redis keys and of the RabbitMQ exchange.
    pub key_prefix: String,
    /// RabbitMQ carrying the change notices.
    pub amqp_url: String,
    /// Whether `amqp_url` was given (or `source = "redis"`).
    pub amqp_url_set: bool,
    /// How often Redis is read even without a notice.
    pub poll_interval: std::time::Duration,
}

/// `[routing] source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingSource {
    /// The config file (watched, and re-read on SIGHUP).
    File,
    /// The document at Redis key `<key_prefix>:routing`, with RabbitMQ notices.
    Redis,
}

/// One `[[cluster]]`: a named group of nodes holding the same data.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Static nodes, or the nodes last discovered through `srv`.
    pub nodes: Vec<NodeConfig>,
    /// Where the nodes come from when they are discovered through DNS SRV.
    pub srv: Option<SrvConfig>,
    /// How `https://` nodes of this cluster are verified.
    pub tls: NodeTlsConfig,
    /// Where this cluster's reads go first (a Service balancing over its
    /// nodes); when it fails before the first byte, the router picks a node.
    pub read_url: Option<http::Uri>,
}

/// `ca_file` and `insecure_skip_verify` of a `[[cluster]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTlsConfig {
    /// PEM file of the certificate authorities trusted for this cluster's
    /// nodes; `None` trusts the system roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (off by default; for test set-ups only).
    pub insecure_skip_verify: bool,
}

/// `srv`, `srv_interval` and `scheme` of a `[[cluster]]` whose nodes are the
/// targets of DNS SRV records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvConfig {
    /// The SRV record name, like `_http._tcp.influxdb.svc`.
    pub name: String,
    /// How often the records are looked up again.
    pub interval: Duration,
    /// The scheme of the node URLs: `http` or `https`.
    pub scheme: String,
}

/// One `[[route]]`: where data of matching databases and measurements goes.
/// Requests that no rule matches go to `routing.default_cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// The databases the rule applies to; `None` (left out) is every one.
    pub database: Option<Glob>,
    /// The measurements the rule applies to; `None` (left out) is every one.
    pub measurement: Option<Glob>,
    pub target: RouteTarget,
}

/// One `[[move]]`: the data of matching databases and measurements is on
/// its way from cluster `from` to cluster `to` (a rebalance after a routing
/// change). While it is `copying`, writes go to both and reads are
/// answered from `from`, which holds everything; once `done`, `to` alone
/// answers and `from` only waits for the data to be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveConfig {
    /// The databases it applies to (a name, or a glob).
    pub database: Glob,
    /// The measurements it applies to; `None` (left out) is every one.
    pub measurement: Option<Glob>,
    pub from: String,
    pub to: String,
    pub state: MoveState,
}

/// How far a `[[move]]` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveState {
    /// Being copied: writes go to both clusters, reads to `from`.
    Copying,
    /// Copied and verified: reads go to `to`, writes no longer to `from`.
    Done,
}

impl MoveState {
    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveState::Copying => "copying",
            MoveState::Done => "done",
        }
    }
}

/// Where a `[[route]]` sends what it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// `cluster = "name"`: everything to that cluster.
    Cluster(String),
    /// `shard = [...]`: each value of `key` lives on exactly one of these
    /// (at least two, all different) clusters, chosen by rendezvous hashing
    /// (see [`crate::routing::hash`]).
    Shard {
        clusters: Vec<String>,
        key: ShardKey,
    },
}

/// What a sharded rule hashes to pick a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardKey {
    /// The measurement name, unescaped (`shard_key = "measurement"`).
    Measurement,
}

/// One InfluxDB node: `http://host[:port]` or `https://host[:port]`, no
/// path, no query.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub url: http::Uri,
    pub mode: NodeMode,
    /// The addresses to connect to, when the router resolved the URL's host
    /// itself (DNS SRV targets, through `[routing] dns_servers`); empty:
    /// the host is resolved by the system when connecting.
    pub addrs: Vec<std::net::IpAddr>,
}

/// What a node takes part in; see the `accepts_*` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    ReadWrite,
    WriteOnly,
    ReadOnly,
    Drain,
    Off,
}

/// A password: printed as `***` by both `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Where the configuration came from, for logs and `/status`.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    Env(PathBuf),
    Embedded,
}

/// A checked configuration and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub source: ConfigSource,
}

/// Loads the configuration: `cli_path`, else `$INFLUXDB_ROUTER_CONFIG`
/// (ignored when empty), else [`EMBEDDED_DEFAULT`].
pub fn load(cli_path: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    load_from(cli_path, std::env::var_os(CONFIG_ENV))
}

/// [`load`] with the environment variable's value passed in.
fn load_from(cli_path: Option<&Path>, env: Option<OsString>) -> Result<LoadedConfig, ConfigError> {
    let source = match (cli_path, env) {
        (Some(path), _) => ConfigSource::File(path.to_owned()),
        (None, Some(env)) if !env.is_empty() => ConfigSource::Env(PathBuf::from(env)),
        (None, _) => ConfigSource::Embedded,
    };
    let config = match &source {
        ConfigSource::File(path) | ConfigSource::Env(path) => load_file(path)?,
        ConfigSource::Embedded => Config::embedded_default(),
    };
    Ok(LoadedConfig { config, source })
}

fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| {
        let why = match err.kind() {
            std::io::ErrorKind::NotFound => "the file does not exist".to_owned(),
            _ => err.to_string(),
        };
        ConfigError::single(&origin, "", format!("cannot read the config file: {why}"))
    })?;
    Config::from_toml_str(&text, &origin)
}

impl Config {
    /// Parses and checks TOML text; `origin` names the file in messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut problems = Problems::new(origin);
        let Some(raw) = raw::parse(text, &mut problems) else {
            return Err(problems.into_error());
        };
        let config = validate::build(raw, &mut problems);
        match problems.is_empty() {
            true => Ok(config),
            false => Err(problems.into_error()),
        }
    }

    /// The [`EMBEDDED_DEFAULT`] configuration, which is always valid.
    pub fn embedded_default() -> Config {
        Config::from_toml_str(EMBEDDED_DEFAULT, EMBEDDED_ORIGIN)
            .unwrap_or_else(|err| panic!("the embedded default config is invalid:\n{err}"))
    }

    /// The number of nodes over all clusters.
    pub fn node_count(&self) -> usize {
        self.clusters.iter().map(|c| c.nodes.len()).sum()
    }

    /// The cluster called `name`, if any.
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

impl NodeConfig {
    /// The node's port: the one in its URL, else 443 for `https://` and 80
    /// for `http://`.
    pub fn port(&self) -> u16 {
        let default = match self.url.scheme_str() {
            Some("https") => 443,
            _ => 80,
        };
        self.url.port_u16().unwrap_or(default)
    }
}

impl FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "any" => Ok(Consistency::Any),
            "one" => Ok(Consistency::One),
            "quorum" => Ok(Consistency::Quorum),
            "all" => Ok(Consistency::All),
            _ => Err(format!(
                "expected one of \"any\", \"one\", \"quorum\" or \"all\", got {s:?}"
            )),
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Consistency::Any => "any",
            Consistency::One => "one",
            Consistency::Quorum => "quorum",
            Consistency::All => "all",
        })
    }
}

impl NodeMode {
    const ALL: [NodeMode; 5] = [
        NodeMode::ReadWrite,
        NodeMode::WriteOnly,
        NodeMode::ReadOnly,
        NodeMode::Drain,
        NodeMode::Off,
    ];

    /// Whether writes are replicated to this node.
    pub fn accepts_writes(self) -> bool {
        matches!(self, NodeMode::ReadWrite | NodeMode::WriteOnly)
    }

    /// Whether queries may be sent to this node.
    pub fn accepts_reads(self) -> bool {
        matches!(self, NodeMode::ReadWrite | NodeMode::ReadOnly)
    }

    /// Whether administrative statements are broadcast to this node.
    pub fn accepts_admin(self) -> bool {
        self != NodeMode::Off
    }

    /// The TOML spelling: `read-write`, `write-only`, `read-only`, `drain`, `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeMode::ReadWrite => "read-write",
            NodeMode::WriteOnly => "write-only",
            NodeMode::ReadOnly => "read-only",
            NodeMode::Drain => "drain",
            NodeMode::Off => "off",
        }
    }
}

impl FromStr for NodeMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        NodeMode::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            format!(
                "expected one of \"read-write\", \"write-only\", \"read-only\", \"drain\" or \"off\", got {s:?}"
            )
        })
    }
}

impl fmt::Display for NodeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "file {}", path.display()),
            ConfigSource::Env(path) => write!(f, "file {} (from ${CONFIG_ENV})", path.display()),
            ConfigSource::Embedded => f.write_str(EMBEDDED_ORIGIN),
        }
    }
}
