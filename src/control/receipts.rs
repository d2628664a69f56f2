//! Routers' receipts (`P:routers`, see [`crate::routing::overrides`]): what
//! each live router has applied, and waiting until all of them applied
//! something (an overrides version, a routing document version).
//!
//! A receipt older than three poll intervals belongs to a router that is
//! gone (routers refresh theirs at every poll) and is not waited for.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ControlError;
use crate::routing::overrides::{routers_key, Receipt};

/// How often the receipts are read while waiting.
const READ_EVERY: Duration = Duration::from_millis(200);

/// How long connecting to Redis and one command may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// What a wait ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    /// Every live router's receipt satisfied the predicate; their ids
    /// (empty when no router is live).
    Done(Vec<String>),
    /// The time ran out; the live routers whose receipt did not satisfy it.
    Lagging(Vec<(String, Receipt)>),
}

/// The receipts of the routers that reported within the last three
/// `poll_interval`s, by router id; malformed ones are left out (logged).
pub async fn live_receipts(
    redis_url: &str,
    prefix: &str,
    poll_interval: Duration,
) -> Result<BTreeMap<String, Receipt>, ControlError> {
    let failed =
        |e: &dyn std::fmt::Display| ControlError::Failed(format!("Redis at {redis_url}: {e}"));
    let client = redis::Client::open(redis_url).map_err(|e| failed(&e))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(REDIS_TIMEOUT)
        .set_response_timeout(REDIS_TIMEOUT);
    let mut conn = tokio::time::timeout(
        REDIS_TIMEOUT,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| failed(&"no connection within 5 s"))?
    .map_err(|e| failed(&e))?;
    let all: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(routers_key(prefix))
        .query_async(&mut conn)
        .await
        .map_err(|e| failed(&e))?;
    Ok(live(all, poll_interval, crate::clock::unix_ms()))
}

/// The well-formed receipts of `all` younger than three `poll_interval`s at `now_ms`.
fn live(
    all: BTreeMap<String, String>,
    poll_interval: Duration,
    now_ms: u64,
) -> BTreeMap<String, Receipt> {
    let max_age = poll_interval.as_millis().saturating_mul(3) as u64;
    all.into_iter()
        .filter_map(|(id, text)| match serde_json::from_str::<Receipt>(&text) {
            Ok(receipt) => Some((id, receipt)),
            Err(error) => {
                tracing::warn!(router = %id, %error, "malformed router receipt ignored");
                None
            }
        })
        .filter(|(_, receipt)| now_ms.saturating_sub(receipt.at_ms) < max_age)
        .collect()
}

/// Waits until the receipt of every live router (one that reported within
/// the last three `poll_interval`s) satisfies `predicate`, or `timeout`
/// passes ([`Waited::Lagging`] names the routers that did not get there).
/// Fails when Redis could not be read at the end.
pub async fn wait_for_receipts(
    redis_url: &str,
    prefix: &str,
    poll_interval: Duration,
    predicate: impl Fn(&Receipt) -> bool,
    timeout: Duration,
) -> Result<Waited, ControlError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let read = live_receipts(redis_url, prefix, poll_interval).await;
        let over = tokio::time::Instant::now() >= deadline;
        match read {
            Ok(receipts) => {
                let lagging: Vec<(String, Receipt)> = receipts
                    .iter()
                    .filter(|(_, receipt)| !predicate(receipt))
                    .map(|(id, receipt)| (id.clone(), receipt.clone()))
                    .collect();
                if lagging.is_empty() {
                    return Ok(Waited::Done(receipts.into_keys().collect()));
                }
                if over {
                    return Ok(Waited::Lagging(lagging));
                }
            }
            Err(error) if over => return Err(error),
            Err(error) => tracing::warn!(%error, "cannot read router receipts; trying again"),
        }
        tokio::time::sleep(READ_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_malformed_receipts_are_not_live() {
        let receipt = |at_ms| {
            Receipt {
                routing_version: 1,
                overrides_version: 2,
                at_ms,
            }
            .to_json()
        };
        let all = BTreeMap::from([
            ("fresh".to_string(), receipt(100_000)),
            ("old".to_string(), receipt(100_000 - 3_000)),
            ("bad".to_string(), "{".to_string()),
        ]);
        let live = live(all, Duration::from_secs(1), 100_500);
        assert_eq!(live.keys().collect::<Vec<_>>(), ["fresh"]);
        assert_eq!(live["fresh"].overrides_version, 2);
    }
}
