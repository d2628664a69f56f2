//! Raw structs to a checked [`Config`]: defaults, conversions and rules.
//!
//! Every converter reports its problems and falls back to a default, so
//! checking always runs to the end and reports everything at once. The
//! resulting `Config` is only handed out when no problem was found.

use std::net::SocketAddr;
use std::time::Duration;

use super::error::Problems;
use super::glob::Glob;
use super::nodes::clusters;
use super::raw::{
    join, table_into, RawBuffer, RawConfig, RawControl, RawHealth, RawLimits, RawLog, RawMetrics,
    RawRouting, RawServer, RawWrite,
};
use super::routes::{moves, routes};
use super::units::{parse_byte_rate, parse_duration, parse_rate, parse_size};
use super::{
    BufferConfig, CoalesceConfig, Config, Consistency, ControlConfig, FsyncPolicy, HealthConfig,
    LimitsConfig, LogConfig, LogFormat, MetricsConfig, OnFull, RoutingConfig, RoutingSource,
    ServerConfig, ServerTlsConfig, UdpConfig, WriteConfig,
};

/// Builds the configuration; the result is only meaningful when `problems`
/// stays empty.
pub(crate) fn build(raw: RawConfig, problems: &mut Problems) -> Config {
    let server = table_into(raw.server.unwrap_or_default(), "server", problems);
    let server = check_server(server, problems);
    let write = table_into(raw.write.unwrap_or_default(), "write", problems);
    let write = check_write(write, problems);
    let health = table_into(raw.health.unwrap_or_default(), "health", problems);
    let health = check_health(health, problems);
    let buffer = table_into(raw.buffer.unwrap_or_default(), "buffer", problems);
    let buffer = check_buffer(buffer, problems);
    let routing = table_into(raw.routing.unwrap_or_default(), "routing", problems);
    let (clusters, names) = clusters(raw.cluster, problems);
    let routing = check_routing(routing, &names, problems);
    let routes = routes(raw.route, &names, problems);
    let moves = moves(raw.moves, &names, problems);
    let metrics = table_into(raw.metrics.unwrap_or_default(), "metrics", problems);
    let metrics = check_metrics(metrics, problems);
    let log = table_into(raw.log.unwrap_or_default(), "log", problems);
    let log = check_log(log, problems);
    let control = table_into(raw.control.unwrap_or_default(), "control", problems);
    let control = check_control(control, problems);
    let limits = table_into(raw.limits.unwrap_or_default(), "limits", problems);
    let limits = check_limits(limits, problems);
    Config {
        server,
        write,
        health,
        buffer,
        routing,
        clusters,
        routes,
        moves,
        metrics,
        log,
        control,
        limits,
    }
}

/// Every `[limits]` key is optional: a limit left out is off.
fn check_limits(raw: RawLimits, problems: &mut Problems) -> LimitsConfig {
    let mut s = Section::new("limits", problems);
    let mut database_bytes = Vec::new();
    for (pattern, value) in raw.database_bytes.unwrap_or_default() {
        let key = format!("database_bytes.{pattern:?}");
        let glob = Glob::new(&pattern).map_err(|e| s.fail(&key, e, ()));
        let rate = s.rate(&key, Some(value), parse_byte_rate);
        if let (Ok(glob), Some(rate)) = (glob, rate) {
            database_bytes.push((glob, rate));
        }
    }
    LimitsConfig {
        client_requests: s.rate("client_requests", raw.client_requests, parse_rate),
        client_bytes: s.rate("client_bytes", raw.client_bytes, parse_byte_rate),
        user_bytes: s.rate("user_bytes", raw.user_bytes, parse_byte_rate),
        database_bytes,
        client_queries: raw
            .client_queries
            .map(|n| s.count("client_queries", Some(n), 1u32)),
    }
}

fn check_control(raw: RawControl, problems: &mut Problems) -> ControlConfig {
    let mut s = Section::new("control", problems);
    ControlConfig {
        auto_recover: raw.auto_recover.unwrap_or(false),
        job_lock_ttl: s.duration("job_lock_ttl", raw.job_lock_ttl, "30s", false),
        max_attempts: s.count("max_attempts", raw.max_attempts, 3),
    }
}

fn check_server(raw: RawServer, problems: &mut Problems) -> ServerConfig {
    let mut s = Section::new("server", problems);
    ServerConfig {
        bind: s.bind("bind", raw.bind),
        max_body_size: s.size("max_body_size", raw.max_body_size, 64 << 20),
        read_timeout: s.duration("read_timeout", raw.read_timeout, "30s", false),
        max_connections: s.count("max_connections", raw.max_connections, 4096),
        shutdown_timeout: s.duration("shutdown_timeout", raw.shutdown_timeout, "30s", true),
        udp: check_udp(&mut s, raw.udp_bind, raw.udp_database),
        tls: check_server_tls(&mut s, raw.tls_cert, raw.tls_key),
    }
}

/// `udp_database` only means something with `udp_bind`.
fn check_udp(
    s: &mut Section<'_>,
    bind: Option<String>,
    database: Option<String>,
) -> Option<UdpConfig> {
    let Some(text) = bind else {
        if database.is_some() {
            s.fail(
                "udp_database",
                "only applies with udp_bind; set udp_bind, or remove this key",
                (),
            );
        }
        return None;
    };
    let bind = match text.parse() {
        Ok(addr) => addr,
        Err(_) => {
            let message = format!("expected an address like \"0.0.0.0:8089\", got {text:?}");
            return s.fail("udp_bind", message, None);
        }
    };
    let database = database.unwrap_or_else(|| "udp".to_owned());
    if database.is_empty() {
        return s.fail("udp_database", "expected a database name, got \"\"", None);
    }
    Some(UdpConfig { bind, database })
}

/// `tls_cert` and `tls_key` come together. The files are read when the
/// listener starts, so a bad one is a start-up error naming the file.
fn check_server_tls(
    s: &mut Section<'_>,
    cert: Option<String>,
    key: Option<String>,
) -> Option<ServerTlsConfig> {
    match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => Some(ServerTlsConfig {
            cert: cert.into(),
            key: key.into(),
        }),
        (Some(cert), Some(_)) if cert.is_empty() => {
            s.fail("tls_cert", "expected a file path, got \"\"", None)
        }
        (Some(_), Some(_)) => s.fail("tls_key", "expected a file path, got \"\"", None),
        (Some(_), None) => s.fail("tls_key", "is required with tls_cert", None),
        (None, Some(_)) => s.fail("tls_cert", "is required with tls_key", None),
    }
}

fn check_metrics(raw: RawMetrics, problems: &mut Problems) -> MetricsConfig {
    let mut s = Section::new("metrics", problems);
    let self_database = match raw.self_database {
        Some(name) if name.is_empty() => {
            s.fail("self_database", "expected a database name, got \"\"", None)
        }
        other => other,
    };
    MetricsConfig {
        prometheus: raw.prometheus.unwrap_or(true),
        self_database,
        self_interval: s.duration("self_interval", raw.self_interval, "10s", false),
    }
}

fn check_log(raw: RawLog, problems: &mut Problems) -> LogConfig {
    let mut s = Section::new("log", problems);
    let level = raw.level.unwrap_or_else(|| "info".to_owned());
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
        s.fail(
            "level",
            format!("expected a level like \"info\" or a filter like \"influxdb_router=debug\", got {level:?} ({e})"),
            (),
        );
    }
    let format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => s.fail(
            "format",
            format!("expected \"text\" or \"json\", got {other:?}"),
            LogFormat::Text,
        ),
    };
    LogConfig { level, format }
}

fn check_write(raw: RawWrite, problems: &mut Problems) -> WriteConfig {
    let mut s = Section::new("write", problems);
    let consistency = match raw.consistency.as_deref().map(str::parse) {
        None => Consistency::Any,
        Some(Ok(consistency)) => consistency,
        Some(Err(_)) => {
            let got = raw.consistency.unwrap_or_default();
            let message = format!("expected \"any\", \"one\", \"quorum\" or \"all\", got {got:?}");
            s.fail("consistency", message, Consistency::Any)
        }
    };
    let timeout = s.duration("timeout", raw.timeout, "10s", false);
    let delay = s.duration("coalesce_delay", raw.coalesce_delay, "0s", true);
    let max_bytes = s.size("coalesce_max_bytes", raw.coalesce_max_bytes, 1 << 20);
    if !delay.is_zero() && delay >= timeout {
        let message = format!("must be shorter than write.timeout ({timeout:?}), got {delay:?}");
        s.fail("coalesce_delay", message, ());
    }
    WriteConfig {
        consistency,
        timeout,
        coalesce: (!delay.is_zero()).then_some(CoalesceConfig { delay, max_bytes }),
    }
}

fn check_health(raw: RawHealth, problems: &mut Problems) -> HealthConfig {
    let mut s = Section::new("health", problems);
    HealthConfig {
        interval: s.duration("interval", raw.interval, "5s", false),
        timeout: s.duration("timeout", raw.timeout, "2s", false),
        unhealthy_after: s.count("unhealthy_after", raw.unhealthy_after, 2),
        healthy_after: s.count("healthy_after", raw.healthy_after, 2),
    }
}

fn check_buffer(raw: RawBuffer, problems: &mut Problems) -> BufferConfig {
    let mut s = Section::new("buffer", problems);
    let dir = match raw.dir {
        Some(dir) if dir.trim().is_empty() => {
            s.fail("dir", "expected a directory path, got \"\"", dir)
        }
        Some(dir) => dir,
        None => super::DEFAULT_BUFFER_DIR.to_string(),
    };
    let on_full = match raw.on_full.as_deref() {
        None | Some("reject") => OnFull::Reject,
        Some("drop-oldest") => OnFull::DropOldest,
        Some(other) => {
            let message = format!("expected \"reject\" or \"drop-oldest\", got {other:?}");
            s.fail("on_full", message, OnFull::Reject)
        }
    };
    let fsync = match raw.fsync.as_deref() {
        None | Some("batch") => FsyncPolicy::Batch,
        Some("always") => FsyncPolicy::Always,
        Some("never") => FsyncPolicy::Never,
        Some(other) => {
            let message = format!("expected \"always\", \"batch\" or \"never\", got {other:?}");
            s.fail("fsync", message, FsyncPolicy::Batch)
        }
    };
    let retry_min = s.duration("retry_min", raw.retry_min, "100ms", false);
    let retry_max = s.duration("retry_max", raw.retry_max, "30s", false);
    if retry_max < retry_min {
        let message =
            format!("must not be shorter than retry_min ({retry_min:?}), got {retry_max:?}");
        s.fail("retry_max", message, ());
    }
    BufferConfig {
        dir: dir.into(),
        max_size_per_node: s.size("max_size_per_node", raw.max_size_per_node, 1 << 30),
        on_full,
        fsync,
        retry_min,
        retry_max,
    }
}

/// `default_cluster` may be left out when there is exactly one cluster.
/// `names` holds every cluster name that was written, valid or not.
fn check_routing(raw: RawRouting, names: &[String], problems: &mut Problems) -> RoutingConfig {
    let mut s = Section::new("routing", problems);
    let key = "default_cluster";
    let listed = || {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let default_cluster = match (raw.default_cluster, names) {
        (Some(name), _) if names.is_empty() || names.contains(&name) => name,
        (Some(name), _) => {
            let message = format!(
                "expected the name of a cluster ({}), got {name:?}",
                listed()
            );
            s.fail(key, message, name)
        }
        (None, [only]) => only.clone(),
        (None, []) => String::new(),
        (None, _) => {
            let message = format!(
                "is required when there is more than one cluster; expected one of {}",
                listed()
            );
            s.fail(key, message, String::new())
        }
    };
    let source = match raw.source.as_deref() {
        None | Some("file") => RoutingSource::File,
        Some("redis") => RoutingSource::Redis,
        Some(other) => s.fail(
            "source",
            format!("expected \"file\" or \"redis\", got {other:?}"),
            RoutingSource::File,
        ),
    };
    let redis_url_set = raw.redis_url.is_some() || source == RoutingSource::Redis;
    let redis_url = raw
        .redis_url
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".to_string());
    if !redis_url.starts_with("redis://") && !redis_url.starts_with("unix://") {
        s.fail(
            "redis_url",
            format!("expected a URL like \"redis://127.0.0.1:6379/0\", got {redis_url:?}"),
            (),
        );
    }
    let amqp_url_set = raw.amqp_url.is_some() || source == RoutingSource::Redis;
    let amqp_url = raw
        .amqp_url
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
    if !amqp_url.starts_with("amqp://") {
        s.fail(
            "amqp_url",
            format!(
                "expected a URL like \"amqp://guest:guest@127.0.0.1:5672/%2f\", got {amqp_url:?}"
            ),
            (),
        );
    }
    let key_prefix = raw
        .key_prefix
        .unwrap_or_else(|| "influxdb-router".to_string());
    if key_prefix.is_empty() {
        s.fail("key_prefix", "expected a non-empty prefix", ());
    }
    let poll_interval = s.duration("poll_interval", raw.poll_interval, "30s", false);
    let mut dns_servers = Vec::new();
    for (i, text) in raw.dns_servers.unwrap_or_default().iter().enumerate() {
        match text.parse::<SocketAddr>() {
            Ok(addr) => dns_servers.push(addr),
            Err(_) => s.fail(
                &format!("dns_servers[{i}]"),
                format!("expected an address with a port like \"127.0.0.1:53\", got {text:?}"),
                (),
            ),
        }
    }
    RoutingConfig {
        default_cluster,
        watch: raw.watch.unwrap_or(true),
        dns_servers,
        source,
        redis_url,
        redis_url_set,
        key_prefix,
        amqp_url,
        amqp_url_set,
        poll_interval,
    }
}

/// Checks one section's values, reporting problems under its path.
struct Section<'a> {
    path: &'a str,
    problems: &'a mut Problems,
}

impl<'a> Section<'a> {
    fn new(path: &'a str, problems: &'a mut Problems) -> Self {
        Section { path, problems }
    }

    /// Reports a problem with `key` and carries on with `fallback`.
    fn fail<T>(&mut self, key: &str, message: impl Into<String>, fallback: T) -> T {
        self.problems.push(&join(self.path, key), message);
        fallback
    }

    fn bind(&mut self, key: &str, value: Option<String>) -> SocketAddr {
        let fallback = SocketAddr::from(([0, 0, 0, 0], 5096));
        let Some(text) = value else { return fallback };
        text.parse().unwrap_or_else(|_| {
            let message = format!("expected an address like \"0.0.0.0:5096\", got {text:?}");
            self.fail(key, message, fallback)
        })
    }

    fn duration(
        &mut self,
        key: &str,
        value: Option<String>,
        default: &str,
        zero_ok: bool,
    ) -> Duration {
        let text = value.as_deref().unwrap_or(default);
        match parse_duration(text) {
            Ok(d) if d.is_zero() && !zero_ok => {
                let message = format!("expected a duration greater than zero, got {text:?}");
                self.fail(key, message, d)
            }
            Ok(d) => d,
            Err(message) => self.fail(key, message, Duration::ZERO),
        }
    }

    /// A size, written as a string with a unit or as an integer of bytes.
    fn size(&mut self, key: &str, value: Option<toml::Value>, default: u64) -> u64 {
        let zero =
            |got: &dyn std::fmt::Debug| format!("expected a size greater than zero, got {got:?}");
        let result = match value {
            None => return default,
            Some(toml::Value::String(text)) => match parse_size(&text) {
                Ok(0) => Err(zero(&text)),
                other => other,
            },
            Some(toml::Value::Integer(n)) => u64::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| zero(&n)),
            Some(other) => Err(format!(
                "expected a size like \"64MiB\" or a number of bytes, got {other}"
            )),
        };
        result.unwrap_or_else(|message| self.fail(key, message, 0))
    }

    /// A rate written as a string (`"2000/s"`, `"64MiB/s"`), read by `parse`.
    fn rate(
        &mut self,
        key: &str,
        value: Option<toml::Value>,
        parse: fn(&str) -> Result<u64, String>,
    ) -> Option<u64> {
        let result = match value? {
            toml::Value::String(text) => parse(&text),
            other => Err(format!(
                "expected a string with a rate per second like \"2000/s\" or \"64MiB/s\", got {other}"
            )),
        };
        result.map_err(|message| self.fail(key, message, ())).ok()
    }

    /// A whole number from 1 to the largest `T`.
    fn count<T>(&mut self, key: &str, value: Option<i64>, default: T) -> T
    where
        T: TryFrom<i64> + Copy + std::fmt::Display + Bounded,
    {
        let Some(n) = value else { return default };
        match T::try_from(n) {
            Ok(v) if n > 0 => v,
            _ => {
                let message = format!("expected a whole number from 1 to {}, got {n}", T::MAX);
                self.fail(key, message, default)
            }
        }
    }
}

/// The largest value of an integer type, for messages.
trait Bounded {
    const MAX: Self;
}

impl Bounded for u32 {
    const MAX: Self = u32::MAX;
}

impl Bounded for usize {
    const MAX: Self = usize::MAX;
}
