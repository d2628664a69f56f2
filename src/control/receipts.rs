//! Waiting for the routers: each router reports in Redis what it has
//! applied (a [`Receipt`] in `P:routers`, see [`crate::routing::overrides`]);
//! a control-plane step that relies on a routing change (reads switched
//! away from a cluster, a node made write-only) waits until every live
//! router reports it.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::routing::overrides::{routers_key, Receipt};

use super::ControlError;

/// How often the receipts are read while waiting.
const POLL: Duration = Duration::from_millis(250);

/// Routers that had not reported what was waited for.
#[derive(Debug, Clone, Default)]
pub struct Lagging(pub Vec<String>);

/// How long to wait for the routers of `config`: two poll intervals and a
/// margin (a router that misses a notice applies the change at its poll).
pub fn default_timeout(config: &Config) -> Duration {
    config.routing.poll_interval * 2 + Duration::from_secs(5)
}

/// Waits until every live router's receipt satisfies `applied`, for at
/// most `timeout`. A receipt older than three poll intervals is a router
/// that is gone and is not waited for. Returns the routers still lagging
/// at the timeout (empty when all caught up); fails only when Redis cannot
/// be read at all.
pub async fn wait_for_receipts(
    config: &Config,
    applied: impl Fn(&Receipt) -> bool,
    timeout: Duration,
) -> Result<Lagging, ControlError> {
    let routing = &config.routing;
    let fail = |e: String| {
        ControlError::Failed(format!(
            "cannot read router receipts from Redis at {}: {e}",
            routing.redis_url
        ))
    };
    let client =
        redis::Client::open(routing.redis_url.as_str()).map_err(|e| fail(e.to_string()))?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| fail("connection timed out".into()))?
    .map_err(|e| fail(e.to_string()))?;
    let stale_ms = (routing.poll_interval * 3).as_millis() as u64;
    let deadline = Instant::now() + timeout;
    loop {
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(routers_key(&routing.key_prefix))
            .query_async(&mut conn)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let now = crate::clock::unix_ms();
        let lagging: Vec<String> = fields
            .into_iter()
            .filter_map(|(router, value)| {
                let receipt: Receipt = serde_json::from_str(&value).ok()?;
                let live = now.saturating_sub(receipt.at_ms) <= stale_ms;
                (live && !applied(&receipt)).then_some(router)
            })
            .collect();
        if lagging.is_empty() || Instant::now() >= deadline {
            return Ok(Lagging(lagging));
        }
        tokio::time::sleep(POLL).await;
    }
}
