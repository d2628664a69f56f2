//! Redis + RabbitMQ as a routing source (`[routing] source = "redis"`).
//!
//! The routing document (TOML: `[routing] default_cluster`, `[[cluster]]`,
//! `[[route]]`) lives at Redis key `<key_prefix>:routing`, its version (an
//! integer) at `<key_prefix>:routing:version`. [`push`] writes both in one
//! MULTI/EXEC transaction and publishes the new version to the durable
//! fanout exchange `<key_prefix>.routing`. Every router binds its own
//! exclusive, auto-delete, server-named queue to that exchange, re-reads
//! Redis on a notice, on SIGHUP, and every `poll_interval`; a document is
//! handed to the reload path only when its version differs from the last
//! one seen. The last good document is cached in
//! `<buffer.dir>/routing-cache.toml` (first line `# version: N`) and used at
//! start when Redis is unreachable.
//!
//! The same exchange carries the node mode overrides' notices
//! (`overrides:<version>`, see [`crate::routing::overrides`]); the listener
//! tells them apart ([`Notice`]) and hands them to the overrides follower
//! ([`super::overrides`]), which any router with `redis_url` runs.
//! Outages of Redis or RabbitMQ are logged and retried with backoff; they
//! never stop the router.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};

use super::{Applied, Sink};
use crate::config::Config;

/// The cache file's name inside `buffer.dir`.
pub const CACHE_FILE: &str = "routing-cache.toml";

/// How often [`update`] tries again when another change came first.
const UPDATE_TRIES: usize = 10;

/// How long connecting to Redis or RabbitMQ may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis key of the routing document.
pub fn document_key(prefix: &str) -> String {
    format!("{prefix}:routing")
}

/// The Redis key of the document's version.
pub fn version_key(prefix: &str) -> String {
    format!("{prefix}:routing:version")
}

/// The fanout exchange the versions are published to.
pub fn exchange(prefix: &str) -> String {
    format!("{prefix}.routing")
}

/// Where the last good document is cached.
pub fn cache_path(config: &Config) -> PathBuf {
    config.buffer.dir.join(CACHE_FILE)
}

/// A message on the routing exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A routing document of this version was pushed (0: the body was not
    /// a number; the document is read all the same).
    Document(u64),
    /// The node mode overrides changed to this version (see
    /// [`crate::routing::overrides::notice`]).
    Overrides(u64),
}

impl Notice {
    /// Tells a notice's body apart: `overrides:<version>`, else a document version.
    pub fn parse(body: &[u8]) -> Notice {
        let text = std::str::from_utf8(body).unwrap_or("");
        match crate::routing::overrides::notice_version(text) {
            Some(version) => Notice::Overrides(version),
            None => Notice::Document(text.trim().parse().unwrap_or(0)),
        }
    }
}

/// Where the notices of the exchange go: document versions to the Redis
/// routing source (`source = "redis"`), override changes to the overrides
/// follower ([`super::overrides`]). A notice with nowhere to go is dropped.
#[derive(Clone, Default)]
pub struct NoticeRoutes {
    pub documents: Option<mpsc::Sender<u64>>,
    pub overrides: Option<mpsc::Sender<super::Wake>>,
}

/// Why a push or a read failed.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("invalid routing document:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("redis {url}: {message}")]
    Redis { url: String, message: String },
    #[error("rabbitmq {url}: {message}")]
    Amqp { url: String, message: String },
}

/// What [`push`] did.
#[derive(Debug)]
pub struct Pushed {
    /// The version now stored in Redis.
    pub version: u64,
    /// Whether the notice could be published; routers still pick the change
    /// up at their next poll when it could not.
    pub notice: Result<(), RoutesError>,
}

/// Validates `text` as a configuration (or just its routing part) and
/// returns every problem.
pub fn validate(text: &str, origin: &str) -> Result<Config, Vec<String>> {
    Config::from_toml_str(text, origin)
        .map_err(|e| e.problems().iter().map(|p| p.to_string()).collect())
}

/// Validates `text`, stores it with a new version in one transaction and
/// publishes the version to the exchange.
pub async fn push(
    redis_url: &str,
    amqp_url: &str,
    prefix: &str,
    text: &str,
    origin: &str,
) -> Result<Pushed, RoutesError> {
    validate(text, origin).map_err(RoutesError::Invalid)?;
    let redis_error = |e: redis::RedisError| RoutesError::Redis {
        url: redis_url.to_string(),
        message: e.to_string(),
    };
    let mut conn = connect_redis(redis_url)
        .await
        .map_err(|message| RoutesError::Redis {
            url: redis_url.to_string(),
            message,
        })?;
    let (version,): (u64,) = redis::pipe()
        .atomic()
        .set(document_key(prefix), text)
        .ignore()
        .incr(version_key(prefix), 1)
        .query_async(&mut conn)
        .await
        .map_err(redis_error)?;
    let notice = publish_notice(amqp_url, prefix, version).await;
    Ok(Pushed { version, notice })
}

/// Changes the stored document: `edit` gets the document in force (and
/// its version) and returns the next one, or `None` to leave it. The
/// change is stored as the next version only if nobody stored another in
/// the meantime (WATCH/MULTI; `edit` runs again on the newer one), and
/// announced like a [`push`]. `Ok(None)` when `edit` left it unchanged.
pub async fn update(
    redis_url: &str,
    amqp_url: &str,
    prefix: &str,
    origin: &str,
    mut edit: impl FnMut(u64, &str) -> Result<Option<String>, String>,
) -> Result<Option<Pushed>, RoutesError> {
    let fail = |message: String| RoutesError::Redis {
        url: redis_url.to_string(),
        message,
    };
    let client = redis::Client::open(redis_url).map_err(|e| fail(e.to_string()))?;
    // a connection of its own: WATCH belongs to the connection
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| fail("connection timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    for _ in 0..UPDATE_TRIES {
        let _: () = redis::cmd("WATCH")
            .arg(document_key(prefix))
            .arg(version_key(prefix))
            .query_async(&mut conn)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (version, document): (Option<String>, Option<String>) = redis::pipe()
            .get(version_key(prefix))
            .get(document_key(prefix))
            .query_async(&mut conn)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (Some(version), Some(document)) = (version, document) else {
            let _: () = redis::cmd("UNWATCH")
                .query_async(&mut conn)
                .await
                .unwrap_or(());
            return Err(fail(format!(
                "no routing document at {}; push one with `admin routes push`",
                document_key(prefix)
            )));
        };
        let version: u64 = version.trim().parse().map_err(|_| {
            fail(format!(
                "{}: expected an integer, got {version:?}",
                version_key(prefix)
            ))
        })?;
        let next = match edit(version, &document) {
            Ok(Some(next)) => next,
            Ok(None) => {
                let _: () = redis::cmd("UNWATCH")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(());
                return Ok(None);
            }
            Err(message) => {
                let _: () = redis::cmd("UNWATCH")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(());
                return Err(RoutesError::Invalid(vec![message]));
            }
        };
        if let Err(problems) = validate(&next, origin) {
            let _: () = redis::cmd("UNWATCH")
                .query_async(&mut conn)
                .await
                .unwrap_or(());
            return Err(RoutesError::Invalid(problems));
        }
        let stored: Option<(u64,)> = redis::pipe()
            .atomic()
            .set(document_key(prefix), &next)
            .ignore()
            .incr(version_key(prefix), 1)
            .query_async(&mut conn)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if let Some((version,)) = stored {
            let notice = publish_notice(amqp_url, prefix, version).await;
            return Ok(Some(Pushed { version, notice }));
        }
        // someone stored another version meanwhile: edit that one
    }
    Err(fail(format!(
        "the routing document kept changing; gave up after {UPDATE_TRIES} tries"
    )))
}

/// The stored version and document, if any.
pub async fn show(redis_url: &str, prefix: &str) -> Result<Option<(u64, String)>, RoutesError> {
    let mut conn = connect_redis(redis_url)
        .await
        .map_err(|message| RoutesError::Redis {
            url: redis_url.to_string(),
            message,
        })?;
    read(&mut conn, prefix)
        .await
        .map_err(|message| RoutesError::Redis {
            url: redis_url.to_string(),
            message,
        })
}

/// Publishes `version` to the exchange of `prefix`.
pub async fn publish_notice(amqp_url: &str, prefix: &str, version: u64) -> Result<(), RoutesError> {
    publish_body(amqp_url, prefix, &version.to_string()).await
}

/// Publishes `body` (a document version, or an overrides notice from
/// [`crate::routing::overrides::notice`]) to the exchange of `prefix`.
pub async fn publish_body(amqp_url: &str, prefix: &str, body: &str) -> Result<(), RoutesError> {
    let fail = |message: String| RoutesError::Amqp {
        url: amqp_url.to_string(),
        message,
    };
    let connection = tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(amqp_url, ConnectionProperties::default()),
    )
    .await
    .map_err(|_| fail("connection timed out".into()))?
    .map_err(|e| fail(e.to_string()))?;
    let result = async {
        let channel = connection.create_channel().await?;
        declare_exchange(&channel, prefix).await?;
        channel
            .basic_publish(
                &exchange(prefix),
                "",
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await?
            .await?;
        channel.close(200, "bye").await?;
        Ok::<_, lapin::Error>(())
    }
    .await;
    let _ = connection.close(200, "bye").await;
    result.map_err(|e| fail(e.to_string()))
}

async fn declare_exchange(channel: &lapin::Channel, prefix: &str) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            &exchange(prefix),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

pub(super) async fn connect_redis(url: &str) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(CONNECT_TIMEOUT)
        .set_number_of_retries(1);
    tokio::time::timeout(
        CONNECT_TIMEOUT * 2,
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| "connection timed out".to_string())?
    .map_err(|e| e.to_string())
}

/// Reads the version and the document in one transaction.
async fn read(conn: &mut ConnectionManager, prefix: &str) -> Result<Option<(u64, String)>, String> {
    let (version, document): (Option<String>, Option<String>) = redis::pipe()
        .atomic()
        .get(version_key(prefix))
        .get(document_key(prefix))
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    match (version, document) {
        (Some(v), Some(document)) => {
            let version = v
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("{}: expected an integer, got {v:?}", version_key(prefix)))?;
            Ok(Some((version, document)))
        }
        _ => Ok(None),
    }
}

/// The source's state: the Redis connection and the last version seen.
struct Follower {
    sink: Arc<dyn Sink>,
    url: String,
    prefix: String,
    cache: PathBuf,
    conn: Option<ConnectionManager>,
    /// Version of the last document handed to the reload path.
    seen: Option<u64>,
    /// Asks the overrides follower to write this router's receipt (the
    /// routing version it reports changed).
    report: Option<mpsc::Sender<super::Wake>>,
}

impl Follower {
    /// Reads Redis and hands a new version to the reload path. Returns
    /// whether Redis could be read.
    async fn check(&mut self) -> bool {
        if self.conn.is_none() {
            match connect_redis(&self.url).await {
                Ok(conn) => {
                    tracing::info!(url = %self.url, "connected to redis");
                    self.conn = Some(conn);
                }
                Err(error) => {
                    tracing::warn!(url = %self.url, %error, "redis unreachable; the routing table stays");
                    return false;
                }
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let (version, document) = match read(conn, &self.prefix).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                tracing::debug!(prefix = %self.prefix, "no routing document in redis yet");
                return true;
            }
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "cannot read the routing document from redis; the routing table stays");
                return false;
            }
        };
        if self.seen == Some(version) {
            return true;
        }
        self.seen = Some(version);
        let origin = format!("redis {} version {version}", document_key(&self.prefix));
        match self.sink.apply_document(&document, &origin) {
            Applied::Swapped(table) => {
                tracing::info!(version, table, "routing table swapped from redis");
                self.sink.set_document_version(version);
                self.report();
                write_cache(&self.cache, version, &document).await;
            }
            Applied::Unchanged => {
                tracing::debug!(version, "routing document read; routing unchanged");
                self.sink.set_document_version(version);
                self.report();
                write_cache(&self.cache, version, &document).await;
            }
            Applied::Refused(_) => {}
        }
        true
    }
}

impl Follower {
    fn report(&self) {
        if let Some(report) = &self.report {
            let _ = report.try_send(super::Wake::Report);
        }
    }
}

async fn write_cache(path: &Path, version: u64, document: &str) {
    let tmp = path.with_extension("toml.tmp");
    let text = format!("# version: {version}\n{document}");
    let result = async {
        tokio::fs::write(&tmp, text).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the routing cache");
    }
}

/// Reads the cache: its version (from the first line) and document.
pub fn read_cache(path: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let first = text.lines().next()?;
    let version = first.strip_prefix("# version:")?.trim().parse().ok()?;
    Some((version, text))
}

/// Writes a cache file as a router would (for tools and tests).
pub fn write_cache_file(path: &Path, version: u64, document: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("# version: {version}\n{document}"))
}

/// Loads the routing table from Redis (or, when Redis is unreachable, from
/// the cache), then follows notices and polls until `stop` changes.
/// Override notices go to `overrides`, which is also asked for a receipt
/// whenever a document is applied.
pub async fn start(
    sink: &Arc<dyn Sink>,
    config: &Config,
    overrides: Option<mpsc::Sender<super::Wake>>,
    stop: watch::Receiver<bool>,
) {
    let routing = &config.routing;
    let mut follower = Follower {
        sink: sink.clone(),
        url: routing.redis_url.clone(),
        prefix: routing.key_prefix.clone(),
        cache: cache_path(config),
        conn: None,
        seen: None,
        report: overrides.clone(),
    };
    if !follower.check().await {
        match read_cache(&follower.cache) {
            Some((version, document)) => {
                let origin = format!("{} version {version}", follower.cache.display());
                tracing::warn!(cache = %follower.cache.display(), version, "redis unreachable at start; starting from the cached routing table");
                if !matches!(sink.apply_document(&document, &origin), Applied::Refused(_)) {
                    follower.seen = Some(version);
                    sink.set_document_version(version);
                }
            }
            None => {
                tracing::warn!(cache = %follower.cache.display(), "redis unreachable at start and no routing cache; starting from the config file's table")
            }
        }
    }
    let (notices, incoming) = mpsc::channel(16);
    sink.set_notices_subscribed(false);
    let routes = NoticeRoutes {
        documents: Some(notices),
        overrides,
    };
    tokio::spawn(listen(
        sink.clone(),
        routing.amqp_url.clone(),
        routing.key_prefix.clone(),
        routes,
        stop.clone(),
    ));
    tokio::spawn(follow(follower, routing.poll_interval, incoming, stop));
}

async fn follow(
    mut follower: Follower,
    poll: Duration,
    mut notices: mpsc::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; redis is read on notices and polls only");
            None
        }
    };
    let mut ticks = tokio::time::interval(poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            Some(version) = notices.recv() => {
                tracing::debug!(version, "routing change notice");
                while notices.try_recv().is_ok() {}
            }
            _ = ticks.tick() => {}
            Some(()) = hung_up(&mut hangup) => tracing::info!("SIGHUP: reading the routing document from redis"),
            _ = stop.changed() => return,
        }
        follower.check().await;
    }
}

/// The next SIGHUP, or never when there is no handler.
async fn hung_up(hangup: &mut Option<Signal>) -> Option<()> {
    match hangup {
        Some(hangup) => hangup.recv().await,
        None => std::future::pending().await,
    }
}

/// Binds an exclusive queue to the routing exchange of `prefix` for the
/// override notices only (routers whose table does not come from Redis).
pub fn listen_for_overrides(
    sink: &Arc<dyn Sink>,
    url: &str,
    prefix: &str,
    overrides: mpsc::Sender<super::Wake>,
    stop: watch::Receiver<bool>,
) {
    let routes = NoticeRoutes {
        documents: None,
        overrides: Some(overrides),
    };
    tokio::spawn(listen(
        sink.clone(),
        url.to_string(),
        prefix.to_string(),
        routes,
        stop,
    ));
}

/// Consumes the notices of the exchange on an exclusive queue, reconnecting
/// with backoff, until `stop` changes. Whether notices are received is
/// reported to the sink when documents are followed.
async fn listen(
    sink: Arc<dyn Sink>,
    url: String,
    prefix: String,
    routes: NoticeRoutes,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(500);
    let reports = routes.documents.is_some();
    loop {
        let started = tokio::time::Instant::now();
        let error = tokio::select! {
            error = consume(sink.as_ref(), &url, &prefix, &routes) => error,
            _ = stop.changed() => return,
        };
        if reports {
            sink.set_notices_subscribed(false);
        }
        tracing::warn!(%url, %error, retry_in = ?backoff, "rabbitmq notices unavailable; changes wait for the next poll");
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One connection's worth of consuming; returns why it ended.
async fn consume(sink: &dyn Sink, url: &str, prefix: &str, routes: &NoticeRoutes) -> String {
    let connection = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return e.to_string(),
        Err(_) => return "connection timed out".into(),
    };
    let result = async {
        let channel = connection.create_channel().await?;
        declare_exchange(&channel, prefix).await?;
        let queue = channel
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().as_str(),
                &exchange(prefix),
                "",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                queue.name().as_str(),
                "",
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        tracing::info!(queue = %queue.name(), exchange = %exchange(prefix), "listening for routing change notices");
        Ok::<_, lapin::Error>(consumer)
    }
    .await;
    let mut consumer = match result {
        Ok(consumer) => {
            if routes.documents.is_some() {
                sink.set_notices_subscribed(true);
            }
            consumer
        }
        Err(e) => {
            let _ = connection.close(200, "bye").await;
            return e.to_string();
        }
    };
    while let Some(delivery) = consumer.next().await {
        match delivery {
            Ok(delivery) => {
                let delivered = match (Notice::parse(&delivery.data), routes) {
                    (
                        Notice::Document(version),
                        NoticeRoutes {
                            documents: Some(to),
                            ..
                        },
                    ) => to.send(version).await.is_ok(),
                    (
                        Notice::Overrides(version),
                        NoticeRoutes {
                            overrides: Some(to),
                            ..
                        },
                    ) => {
                        tracing::debug!(version, "node mode overrides change notice");
                        // a full channel already holds a read to come
                        !matches!(
                            to.try_send(super::Wake::Read),
                            Err(mpsc::error::TrySendError::Closed(_))
                        )
                    }
                    (notice, _) => {
                        tracing::debug!(?notice, "notice not followed here; dropped");
                        true
                    }
                };
                if !delivered {
                    let _ = connection.close(200, "bye").await;
                    return "the router stopped".into();
                }
            }
            Err(e) => return e.to_string(),
        }
    }
    "the consumer was cancelled".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_told_apart() {
        assert_eq!(Notice::parse(b"7"), Notice::Document(7));
        assert_eq!(Notice::parse(b" 8\n"), Notice::Document(8));
        assert_eq!(Notice::parse(b"garbage"), Notice::Document(0));
        assert_eq!(Notice::parse(&[0xff, 0xfe]), Notice::Document(0));
        assert_eq!(Notice::parse(b"overrides:4"), Notice::Overrides(4));
        assert_eq!(
            Notice::parse(crate::routing::overrides::notice(9).as_bytes()),
            Notice::Overrides(9)
        );
    }
}
