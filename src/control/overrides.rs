//! Writing node mode overrides (the control side; the router applies them,
//! names and formats are in [`crate::routing::overrides`]): each change is
//! the hash field and the version counter in one MULTI/EXEC, then the
//! notice `overrides:<version>` on the fanout exchange `P.routing`. A
//! notice that cannot be published is a warning, not a failure: routers
//! re-read the overrides at every poll.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

use crate::config::Config;
use crate::routing::overrides::{
    self as names, field, overrides_key, overrides_version_key, Override, Overrides,
};
use crate::routing::source::redis as routing_store;

use super::ControlError;

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one Redis command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The overrides of one key prefix, and where their notices go.
#[derive(Clone)]
pub struct OverrideStore {
    conn: MultiplexedConnection,
    pub redis_url: String,
    /// Empty when `[routing] amqp_url` is not set (no notices then).
    pub amqp_url: String,
    pub prefix: String,
}

/// What a change did.
#[derive(Debug, Clone)]
pub struct Changed {
    /// `P:overrides:version` after the change (or now, when nothing changed).
    pub version: u64,
    /// Whether this call changed the hash.
    pub changed: bool,
    /// The override in force for the node afterwards.
    pub current: Option<Override>,
    /// Why the notice was not published, when it was not.
    pub notice_warning: Option<String>,
}

impl OverrideStore {
    /// Connects to `[routing] redis_url`. Overrides live only there: a
    /// configuration without it is a usage error naming the setting, a
    /// Redis that cannot be reached a failure.
    pub async fn connect(config: &Config, command: &str) -> Result<OverrideStore, ControlError> {
        let routing = &config.routing;
        if !routing.redis_url_set {
            return Err(ControlError::Usage(format!(
                "{command} keeps the node's override in Redis, which every router reads: set \
                 [routing] redis_url (and amqp_url for the change notices) to the Redis of the \
                 routers"
            )));
        }
        let url = routing.redis_url.clone();
        let failed = |why: String| {
            ControlError::Failed(format!(
                "{command} keeps the node's override in Redis: [routing] redis_url {url}: {why}"
            ))
        };
        let client = redis::Client::open(url.as_str()).map_err(|e| failed(e.to_string()))?;
        let settings = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(COMMAND_TIMEOUT);
        let mut conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            client.get_multiplexed_async_connection_with_config(&settings),
        )
        .await
        .map_err(|_| failed("no connection within 5 s".into()))?
        .map_err(|e| failed(e.to_string()))?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(OverrideStore {
            conn,
            redis_url: url,
            amqp_url: if routing.amqp_url_set {
                routing.amqp_url.clone()
            } else {
                String::new()
            },
            prefix: routing.key_prefix.clone(),
        })
    }

    /// The connection, for [`super::receipts::wait_for_receipts`].
    pub fn connection(&self) -> &MultiplexedConnection {
        &self.conn
    }

    fn failed(&self, e: impl std::fmt::Display) -> ControlError {
        ControlError::Failed(format!("Redis at {}: {e}", self.redis_url))
    }

    /// Every well-formed override (malformed fields are logged and left out).
    pub async fn all(&self) -> Result<Overrides, ControlError> {
        let mut conn = self.conn.clone();
        let fields: Vec<(String, String)> = conn
            .hgetall(overrides_key(&self.prefix))
            .await
            .map_err(|e| self.failed(e))?;
        let (good, bad) = names::parse_all(fields);
        for (name, why) in bad {
            tracing::warn!(field = %name, %why, key = %overrides_key(&self.prefix), "malformed override ignored");
        }
        Ok(good)
    }

    /// The override of one node; a malformed one is an error naming it.
    pub async fn get(&self, cluster: &str, node: &str) -> Result<Option<Override>, ControlError> {
        let mut conn = self.conn.clone();
        let name = field(cluster, node);
        let value: Option<String> = conn
            .hget(overrides_key(&self.prefix), &name)
            .await
            .map_err(|e| self.failed(e))?;
        let Some(value) = value else {
            return Ok(None);
        };
        let (good, bad) = names::parse_all([(name.clone(), value)]);
        if let Some((_, why)) = bad.first() {
            return Err(ControlError::Failed(format!(
                "the override of {name} in {} is malformed ({why}); fix or remove it (HDEL)",
                overrides_key(&self.prefix)
            )));
        }
        Ok(good.into_values().next())
    }

    /// `P:overrides:version` now (0 when never set).
    pub async fn version(&self) -> Result<u64, ControlError> {
        let mut conn = self.conn.clone();
        let version: Option<u64> = conn
            .get(overrides_version_key(&self.prefix))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(version.unwrap_or(0))
    }

    /// Sets `value` for the node unless it has an override already (which
    /// is kept, whatever it says: the caller decides what to make of it).
    pub async fn set_unless_present(
        &self,
        cluster: &str,
        node: &str,
        value: &Override,
    ) -> Result<Changed, ControlError> {
        let text = serde_json::to_string(value)
            .map_err(|e| ControlError::Failed(format!("cannot encode an override: {e}")))?;
        if self.get(cluster, node).await?.is_none() {
            let mut conn = self.conn.clone();
            let (set, version): (bool, u64) = redis::pipe()
                .atomic()
                .hset_nx(overrides_key(&self.prefix), field(cluster, node), &text)
                .incr(overrides_version_key(&self.prefix), 1)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            let notice_warning = self.notify(version).await;
            return Ok(Changed {
                version,
                changed: set,
                current: self.get(cluster, node).await?,
                notice_warning,
            });
        }
        Ok(Changed {
            version: self.version().await?,
            changed: false,
            current: self.get(cluster, node).await?,
            notice_warning: None,
        })
    }

    /// Removes the node's override if its mode is `mode` (another one set
    /// meanwhile is left alone and returned in `current`).
    pub async fn remove_if_mode(
        &self,
        cluster: &str,
        node: &str,
        mode: &str,
    ) -> Result<Changed, ControlError> {
        let current = self.get(cluster, node).await?;
        match current {
            Some(o) if o.mode == mode => {
                let mut conn = self.conn.clone();
                let (_, version): (u64, u64) = redis::pipe()
                    .atomic()
                    .hdel(overrides_key(&self.prefix), field(cluster, node))
                    .incr(overrides_version_key(&self.prefix), 1)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.failed(e))?;
                let notice_warning = self.notify(version).await;
                Ok(Changed {
                    version,
                    changed: true,
                    current: None,
                    notice_warning,
                })
            }
            other => Ok(Changed {
                version: self.version().await?,
                changed: false,
                current: other,
                notice_warning: None,
            }),
        }
    }

    /// Publishes `overrides:<version>`; a warning when it cannot.
    async fn notify(&self, version: u64) -> Option<String> {
        let body = names::notice(version);
        if self.amqp_url.is_empty() {
            return Some(format!(
                "no [routing] amqp_url: the notice {body} was not published; routers apply \
                 the change at their next poll"
            ));
        }
        match routing_store::publish_body(&self.amqp_url, &self.prefix, &body).await {
            Ok(()) => None,
            Err(e) => Some(format!(
                "the notice {body} was not published ({e}); routers apply the change at their \
                 next poll"
            )),
        }
    }
}
