//! Active health checks: `GET /ping` on every node, every `[health] interval`.
//!
//! A node turns unhealthy after `unhealthy_after` failed checks in a row and
//! healthy again after `healthy_after` good ones; each change is logged once.
//! The checker only updates node state; it never routes anything.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, StatusCode};
use tokio::sync::watch;

use super::auth::AuthRequired;
use super::Node;
use crate::config::HealthConfig;
use crate::payload::Payload;

impl Node {
    /// Feeds one check result into the node's health state.
    pub fn record_check(&self, result: Result<(), String>, config: &HealthConfig) {
        match result {
            Ok(()) => self.record_success(config.healthy_after),
            Err(message) => self.record_failure(config.unhealthy_after, &message),
        }
        if let Ok(mut detail) = self.detail.lock() {
            detail.last_check_at = Some(SystemTime::now());
        }
    }

    fn record_success(&self, healthy_after: u32) {
        self.fails_in_a_row.store(0, Ordering::Relaxed);
        let oks = self.oks_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if oks >= healthy_after && !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(node = %self.name, cluster = %self.cluster, "node is healthy again");
            self.metrics.health_changed(true, "node is healthy again");
        }
    }

    fn record_failure(&self, unhealthy_after: u32, message: &str) {
        self.oks_in_a_row.store(0, Ordering::Relaxed);
        self.note_error(message);
        let fails = self.fails_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if fails >= unhealthy_after && self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(node = %self.name, cluster = %self.cluster, error = %message, "node is unhealthy");
            self.metrics.health_changed(false, message);
        }
    }

    fn record_version(&self, version: Option<&http::HeaderValue>) {
        let Some(version) = version.filter(|v| v.to_str().is_ok()) else {
            return;
        };
        if self.version.load().as_deref() != Some(version) {
            self.version.store(Some(Arc::new(version.clone())));
        }
    }

    /// A body-less health-check request, within the check's timeout.
    async fn health_request(
        self: &Arc<Self>,
        request: http::request::Builder,
        config: &HealthConfig,
    ) -> Result<http::Response<super::NodeResponseBody>, super::NodeError> {
        let kind = super::RequestKind::Health;
        self.send(kind, request, Payload::default(), Some(config.timeout))
            .await
    }

    /// One `GET /ping`; `Ok` on a 204 within the timeout.
    pub async fn ping(self: &Arc<Self>, config: &HealthConfig) -> Result<(), String> {
        let request = self.request(Method::GET, "/ping");
        let response = self
            .health_request(request, config)
            .await
            .map_err(|e| format!("ping failed: {e}"))?;
        self.record_version(response.headers().get("x-influxdb-version"));
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            status => Err(format!("ping answered {status}")),
        }
    }
}

/// Checks `node` until `stop` changes; the first check runs at once.
pub async fn run_checks(node: Arc<Node>, config: HealthConfig, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let result = node.ping(&config).await;
        let up = result.is_ok();
        node.record_check(result, &config);
        if up && node.auth().required() == AuthRequired::Unknown {
            // bounded as a whole: a node that stalls mid-answer must not
            // hold up its health checks
            let _ = tokio::time::timeout(config.timeout, node.probe_auth(&config)).await;
        }
    }
}

/// The `User-Agent` of [`Node::probe_auth`]'s request.
pub const AUTH_PROBE_AGENT: &str = "influxdb-router auth probe";

impl Node {
    /// Asks the node once whether it checks credentials: `SHOW DATABASES`
    /// without any. A 401 or 403 says it does, a 2xx that it does not;
    /// anything else leaves it unknown for the next check.
    pub async fn probe_auth(self: &Arc<Self>, config: &HealthConfig) {
        let request = self
            .request(Method::GET, "/query?q=SHOW+DATABASES")
            .header(http::header::USER_AGENT, AUTH_PROBE_AGENT);
        if let Ok(response) = self.health_request(request, config).await {
            let status = response.status();
            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            if status.is_success() {
                self.auth().set_required(AuthRequired::No);
            } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                self.auth().set_required(AuthRequired::Yes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A node on a closed port, with its queue in a temporary directory.
    fn node() -> (tempfile::TempDir, Arc<Node>) {
        let dir = tempfile::tempdir().unwrap();
        let node = crate::node::test_node("http://127.0.0.1:1", dir.path());
        (dir, node)
    }

    fn health() -> HealthConfig {
        HealthConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_after: 2,
            healthy_after: 3,
        }
    }

    #[test]
    fn node_turns_unhealthy_only_after_enough_failures_in_a_row() {
        let (_dir, node) = node();
        node.record_check(Err("refused".into()), &health());
        assert!(node.is_healthy());
        node.record_check(Ok(()), &health());
        node.record_check(Err("refused".into()), &health());
        assert!(node.is_healthy(), "a success in between resets the count");
        node.record_check(Err("refused".into()), &health());
        assert!(!node.is_healthy());
        assert_eq!(node.detail().last_error.as_deref(), Some("refused"));
    }

    #[test]
    fn node_turns_healthy_again_after_enough_successes() {
        let (_dir, node) = node();
        for _ in 0..2 {
            node.record_check(Err("refused".into()), &health());
        }
        for _ in 0..2 {
            node.record_check(Ok(()), &health());
            assert!(!node.is_healthy());
        }
        node.record_check(Ok(()), &health());
        assert!(node.is_healthy());
    }

    #[tokio::test]
    async fn ping_of_a_closed_port_is_an_error() {
        let (_dir, node) = node();
        let result = node.ping(&health()).await;
        assert!(result.unwrap_err().contains("ping failed"));
    }
}
