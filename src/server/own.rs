//! The router's own traffic: what self-monitoring ([`crate::monitor::self_monitor`])
//! is given as its [`Router`], so that its points and its `CREATE DATABASE`
//! take the same write path and admin broadcast as a client's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::header::HeaderMap;

use super::error::ApiError;
use super::write::{write_payload, WriteParams};
use super::Shared;
use crate::config::Consistency;
use crate::monitor::self_monitor::{Router, Statement};
use crate::monitor::Monitor;
use crate::node::Node;
use crate::payload::Payload;

/// This router, as self-monitoring sees it.
pub struct OwnTraffic(pub Arc<Shared>);

impl Router for OwnTraffic {
    fn monitor(&self) -> &Monitor {
        &self.0.monitor
    }

    fn nodes(&self) -> (u64, Vec<Arc<Node>>) {
        let table = self.0.routing.load();
        (table.version(), table.nodes().cloned().collect())
    }

    fn uptime(&self) -> Duration {
        self.0.started.elapsed()
    }

    fn write(&self, db: &str, body: Bytes) -> BoxFuture<'_, Result<http::StatusCode, String>> {
        let params = WriteParams {
            db: db.to_string(),
            ..WriteParams::default()
        };
        async move {
            let payload = Payload::from(body);
            let headers = HeaderMap::new();
            write_payload(&self.0, &params, &headers, payload, Consistency::Any)
                .await
                .map(|response| response.status())
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn statement(&self, q: &str) -> BoxFuture<'_, Statement> {
        let q = q.to_string();
        async move {
            match super::broadcast::run_statement(&self.0, &q).await {
                Ok(response) => Statement::Answered(response.status()),
                Err(ApiError::Unavailable(message)) => Statement::Queued(message),
                Err(e) => Statement::Failed(e.to_string()),
            }
        }
        .boxed()
    }
}
