//! Node mode overrides kept in Redis, followed for the server, and this
//! router's receipt for them (names and formats: [`crate::routing::overrides`]).
//!
//! Every router with `[routing] redis_url` set runs one follower, whatever
//! its routing source. It reads `P:overrides` and `P:overrides:version` (in
//! one transaction) at start, every `poll_interval`, and when woken with
//! [`Wake::Read`] (a notice `overrides:<version>` on the routing exchange,
//! or the server once it enqueued a recover-node job), and hands the
//! well-formed overrides to the [`Sink`]; malformed fields are logged (once
//! per distinct value) and ignored. After each read, and when woken with
//! [`Wake::Report`] (a routing document was applied), it writes its
//! [`Receipt`] to `P:routers`; at shutdown it removes it. An unreachable
//! Redis is logged and tried again at the next poll: the overrides last
//! applied stay.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, watch};

use super::{Applied, Sink, Wake};
use crate::config::Config;
use crate::routing::overrides::{self, Receipt};

/// This router's id in `P:routers`: `<hostname>:<port>:<pid>`, stable for
/// the life of the process.
pub fn router_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{port}:{}", std::process::id())
}

/// Starts following the overrides when `redis_url` is set: reads them once
/// (so that the table this router starts serving with has them, when Redis
/// answers) and returns the sender that wakes the follower; `None` without
/// `redis_url`.
pub async fn start(
    sink: &Arc<dyn Sink>,
    config: &Config,
    router_id: String,
    stop: watch::Receiver<bool>,
) -> Option<mpsc::Sender<Wake>> {
    let routing = &config.routing;
    if !routing.redis_url_set {
        return None;
    }
    let mut follower = Follower {
        sink: sink.clone(),
        url: routing.redis_url.clone(),
        prefix: routing.key_prefix.clone(),
        id: router_id,
        conn: None,
        reported_bad: BTreeSet::new(),
        version: None,
    };
    follower.read().await;
    follower.report().await;
    let (wake, wakes) = mpsc::channel(16);
    tokio::spawn(follow(follower, routing.poll_interval, wakes, stop));
    Some(wake)
}

struct Follower {
    sink: Arc<dyn Sink>,
    url: String,
    prefix: String,
    id: String,
    conn: Option<ConnectionManager>,
    /// Malformed fields already logged, with their values.
    reported_bad: BTreeSet<(String, String)>,
    /// The version last applied.
    version: Option<u64>,
}

impl Follower {
    async fn connection(&mut self) -> Option<&mut ConnectionManager> {
        if self.conn.is_none() {
            match super::redis::connect_redis(&self.url).await {
                Ok(conn) => self.conn = Some(conn),
                Err(error) => {
                    tracing::warn!(url = %self.url, %error, "redis unreachable; node mode overrides stay as last read");
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    /// Reads the overrides and hands them to the sink.
    async fn read(&mut self) {
        let read_at = Instant::now();
        let prefix = self.prefix.clone();
        let Some(conn) = self.connection().await else {
            return;
        };
        let result: Result<(Option<String>, BTreeMap<String, String>), _> = redis::pipe()
            .atomic()
            .get(overrides::overrides_version_key(&prefix))
            .hgetall(overrides::overrides_key(&prefix))
            .query_async(conn)
            .await;
        let (version, fields) = match result {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "cannot read node mode overrides from redis; they stay as last read");
                return;
            }
        };
        let version = match version.as_deref().map(str::trim) {
            None => 0,
            Some(text) => text.parse::<u64>().unwrap_or_else(|_| {
                tracing::warn!(key = %overrides::overrides_version_key(&prefix), value = %text, "not an integer; taken as version 0");
                0
            }),
        };
        let values = fields.clone();
        let (good, bad) = overrides::parse_all(fields);
        let mut still_bad = BTreeSet::new();
        for (field, why) in bad {
            let value = values.get(&field).cloned().unwrap_or_default();
            let seen = (field.clone(), value.clone());
            if !self.reported_bad.contains(&seen) {
                tracing::warn!(key = %overrides::overrides_key(&prefix), %field, %value, problem = %why, "malformed node mode override ignored");
            }
            still_bad.insert(seen);
        }
        self.reported_bad = still_bad;
        let count = good.len();
        match self.sink.apply_overrides(version, good, read_at) {
            Applied::Swapped(table) => {
                tracing::info!(
                    version,
                    overrides = count,
                    table,
                    "routing table swapped after a node mode overrides change"
                )
            }
            Applied::Unchanged if self.version != Some(version) => {
                tracing::info!(
                    version,
                    overrides = count,
                    "node mode overrides read; routing unchanged"
                )
            }
            Applied::Unchanged | Applied::Refused(_) => {}
        }
        self.version = Some(version);
    }

    /// Writes this router's receipt.
    async fn report(&mut self) {
        let receipt = Receipt {
            at_ms: crate::clock::unix_ms(),
            ..self.sink.receipt()
        };
        let (key, id) = (overrides::routers_key(&self.prefix), self.id.clone());
        let Some(conn) = self.connection().await else {
            return;
        };
        let result: Result<(), _> = redis::cmd("HSET")
            .arg(&key)
            .arg(&id)
            .arg(receipt.to_json())
            .query_async(conn)
            .await;
        if let Err(error) = result {
            tracing::warn!(url = %self.url, %error, "cannot write this router's receipt to redis");
        }
    }

    /// Removes this router's receipt (at shutdown).
    async fn withdraw(&mut self) {
        let (key, id) = (overrides::routers_key(&self.prefix), self.id.clone());
        if let Some(conn) = self.conn.as_mut() {
            let mut removal = redis::cmd("HDEL");
            removal.arg(&key).arg(&id);
            let _ =
                tokio::time::timeout(Duration::from_secs(1), removal.query_async::<()>(conn)).await;
        }
    }
}

async fn follow(
    mut follower: Follower,
    poll: Duration,
    mut wakes: mpsc::Receiver<Wake>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        let read = tokio::select! {
            Some(wake) = wakes.recv() => {
                let mut read = wake == Wake::Read;
                while let Ok(more) = wakes.try_recv() {
                    read |= more == Wake::Read;
                }
                read
            }
            _ = ticks.tick() => true,
            _ = stop.changed() => {
                follower.withdraw().await;
                return;
            }
        };
        if read {
            follower.read().await;
        }
        follower.report().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_id_names_host_port_and_process() {
        let id = router_id(5096);
        let parts: Vec<&str> = id.rsplitn(3, ':').collect();
        assert_eq!(parts[0], std::process::id().to_string());
        assert_eq!(parts[1], "5096");
        assert!(!parts[2].is_empty());
    }
}
