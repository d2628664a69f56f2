//! The pooled HTTP client shared by all nodes, and sending one request.
//!
//! One keep-alive pool serves every node (hyper keeps idle connections per
//! host), so a busy router reuses connections instead of filling the
//! ephemeral port range with TIME_WAIT sockets. Request bodies are
//! [`Payload`]s: reference-counted chunks, cloned per node without copying.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{InFlight, Node};
use crate::payload::{Payload, PayloadBody};

/// The process-wide client towards nodes.
pub type HttpClient = Client<HttpConnector, PayloadBody>;

/// How long establishing a TCP connection to a node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the shared client with a keep-alive pool sized for heavy fan-out.
pub fn build() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Why a node did not answer.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Connect(String),
    #[error("bad request towards node: {0}")]
    Request(String),
}

impl NodeError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, NodeError::Timeout(_))
    }
}

impl Node {
    /// Builds a request to this node for `path_and_query` (starting with `/`).
    pub fn request(&self, method: http::Method, path_and_query: &str) -> http::request::Builder {
        let mut uri = String::with_capacity(self.base.len() + path_and_query.len());
        uri.push_str(&self.base);
        uri.push_str(path_and_query);
        Request::builder().method(method).uri(uri)
    }

    /// Sends `request` and waits for the response head, at most `timeout`.
    pub async fn send(
        self: &Arc<Self>,
        client: &HttpClient,
        request: http::request::Builder,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Result<Response<NodeResponseBody>, NodeError> {
        let request = request
            .body(PayloadBody::new(payload))
            .map_err(|e| NodeError::Request(e.to_string()))?;
        let guard = self.start_request();
        let pending = client.request(request);
        let result = match timeout {
            Some(limit) => tokio::time::timeout(limit, pending)
                .await
                .map_err(|_| NodeError::Timeout(limit))?,
            None => pending.await,
        };
        let response = result.map_err(|e| NodeError::Connect(describe(&e)))?;
        Ok(response.map(|body| NodeResponseBody {
            inner: body,
            _guard: guard,
        }))
    }
}

/// The most specific message in an error chain ("connection refused", …).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        message = inner.to_string();
        source = inner.source();
    }
    message
}

/// A node's response body; the node counts as busy until it is dropped.
#[derive(Debug)]
pub struct NodeResponseBody {
    inner: Incoming,
    _guard: InFlight,
}

impl Body for NodeResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
