//! Waiting for the routers: every router with `[routing] redis_url`
//! reports what it has applied in the hash `P:routers` (a
//! [`Receipt`] per router id, refreshed at every poll; names in
//! [`crate::routing::overrides`]). A control-plane step that relies on a
//! change (an override in force, a routing document version) waits with
//! [`wait_for_receipts`] until every live router's receipt satisfies a
//! predicate. A receipt older than three poll intervals belongs to a router
//! that is gone and is not waited for; a router that is live but lags past
//! the timeout is named in the result, and the caller goes on with a
//! warning (it sees the change at its next poll at the latest).

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

use crate::routing::overrides::{routers_key, Receipt};

use super::ControlError;

/// How often the receipts are read again while waiting.
const RECHECK: Duration = Duration::from_millis(200);

/// How long to wait for receipts by default: two poll intervals and 5 s.
pub fn default_timeout(poll_interval: Duration) -> Duration {
    poll_interval * 2 + Duration::from_secs(5)
}

/// Whether a receipt written at `at_ms` is from a router still running at
/// `now_ms` (younger than three poll intervals).
pub fn is_live(at_ms: u64, now_ms: u64, poll_interval: Duration) -> bool {
    let horizon = u64::try_from(poll_interval.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(3);
    at_ms.saturating_add(horizon) >= now_ms
}

/// What a wait found: router ids by how their receipts stood at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipts {
    /// Live routers whose receipt satisfies the predicate.
    pub acknowledged: Vec<String>,
    /// Live routers whose receipt still does not, when the wait gave up.
    pub lagging: Vec<String>,
    /// Routers whose last receipt is older than three poll intervals.
    pub gone: Vec<String>,
    /// Fields of `P:routers` that are not receipts (ignored).
    pub malformed: Vec<String>,
    /// How long the wait took.
    pub waited: Duration,
}

impl Receipts {
    /// Whether every live router acknowledged.
    pub fn complete(&self) -> bool {
        self.lagging.is_empty()
    }

    /// A warning naming the routers that lagged, if any did.
    pub fn warning(&self, what: &str) -> Option<String> {
        if self.complete() {
            return None;
        }
        Some(format!(
            "router(s) {} did not acknowledge {what} within {:.0?}; going on (they apply it at \
             their next poll)",
            self.lagging.join(", "),
            self.waited
        ))
    }

    /// One line: who acknowledged, lagged, is gone.
    pub fn summary(&self) -> String {
        let mut out = format!("{} router(s) acknowledged", self.acknowledged.len());
        if !self.lagging.is_empty() {
            out.push_str(&format!(", lagging: {}", self.lagging.join(", ")));
        }
        if !self.gone.is_empty() {
            out.push_str(&format!(", {} gone router(s) ignored", self.gone.len()));
        }
        out
    }
}

/// Sorts the fields of `P:routers` by `accept` at `now_ms`.
pub fn classify(
    fields: impl IntoIterator<Item = (String, String)>,
    now_ms: u64,
    poll_interval: Duration,
    accept: &dyn Fn(&Receipt) -> bool,
) -> Receipts {
    let mut out = Receipts::default();
    for (router, value) in fields {
        let Ok(receipt) = serde_json::from_str::<Receipt>(&value) else {
            out.malformed.push(router);
            continue;
        };
        if !is_live(receipt.at_ms, now_ms, poll_interval) {
            out.gone.push(router);
        } else if accept(&receipt) {
            out.acknowledged.push(router);
        } else {
            out.lagging.push(router);
        }
    }
    out.acknowledged.sort();
    out.lagging.sort();
    out.gone.sort();
    out.malformed.sort();
    out
}

/// Waits until every live router's receipt in `P:routers` (`prefix` is
/// `P`) satisfies `accept`, or `timeout` passes; routers that appear while
/// waiting are waited for too. Returns how the receipts stood at the end;
/// lagging routers are not an error (see [`Receipts::warning`]), an
/// unreadable Redis is.
pub async fn wait_for_receipts(
    conn: &MultiplexedConnection,
    prefix: &str,
    poll_interval: Duration,
    timeout: Duration,
    accept: impl Fn(&Receipt) -> bool,
) -> Result<Receipts, ControlError> {
    let key = routers_key(prefix);
    let started = Instant::now();
    let mut conn = conn.clone();
    loop {
        let fields: Vec<(String, String)> = conn
            .hgetall(&key)
            .await
            .map_err(|e| ControlError::Failed(format!("cannot read the receipts in {key}: {e}")))?;
        let mut found = classify(fields, crate::clock::unix_ms(), poll_interval, &accept);
        found.waited = started.elapsed();
        if found.complete() || found.waited >= timeout {
            return Ok(found);
        }
        tokio::time::sleep(RECHECK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(version: u64, at_ms: u64) -> String {
        serde_json::to_string(&Receipt {
            routing_version: 0,
            overrides_version: version,
            at_ms,
        })
        .unwrap()
    }

    #[test]
    fn receipts_are_sorted_by_age_and_version() {
        let poll = Duration::from_secs(10);
        let now = 1_000_000;
        let found = classify(
            [
                ("fresh-ok".to_string(), receipt(5, now - 1_000)),
                ("fresh-old".to_string(), receipt(4, now - 29_000)),
                ("gone".to_string(), receipt(1, now - 31_000)),
                ("junk".to_string(), "{".to_string()),
            ],
            now,
            poll,
            &|r: &Receipt| r.overrides_version >= 5,
        );
        assert_eq!(found.acknowledged, ["fresh-ok"]);
        assert_eq!(found.lagging, ["fresh-old"]);
        assert_eq!(found.gone, ["gone"]);
        assert_eq!(found.malformed, ["junk"]);
        assert!(!found.complete());
        let warning = found.warning("overrides version 5").unwrap();
        assert!(warning.contains("fresh-old"), "{warning}");
        assert_eq!(default_timeout(poll), Duration::from_secs(25));
    }
}
