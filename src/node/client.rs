//! The pooled HTTP client shared by all nodes, and sending one request.
//!
//! One keep-alive pool serves every node (hyper keeps idle connections per
//! host), so a busy router reuses connections instead of filling the
//! ephemeral port range with TIME_WAIT sockets. Request bodies are
//! [`Payload`]s: reference-counted chunks, cloned per node without copying.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{InFlight, Node, RequestKind};
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
    ///
    /// Counts the request in the node's metrics under its [`RequestKind`]
    /// (see there); a failure is no connection, a timeout or a 5xx.
    pub async fn send(
        self: &Arc<Self>,
        client: &HttpClient,
        request: http::request::Builder,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Result<Response<NodeResponseBody>, NodeError> {
        let bytes = payload.len();
        let request = request
            .body(PayloadBody::new(payload))
            .map_err(|e| NodeError::Request(e.to_string()))?;
        let kind = RequestKind::of(&request);
        let guard = self.start_request();
        let started = Instant::now();
        let result = self.exchange(client, request, timeout).await;
        let failed = result
            .as_ref()
            .map_or(true, |response| response.status().is_server_error());
        self.metrics()
            .request(kind, bytes, started.elapsed(), failed);
        Ok(result?.map(|body| NodeResponseBody {
            inner: body,
            _guard: guard,
            sent: None,
        }))
    }

    async fn exchange(
        &self,
        client: &HttpClient,
        request: Request<PayloadBody>,
        timeout: Option<Duration>,
    ) -> Result<Response<Incoming>, NodeError> {
        let pending = client.request(request);
        let result = match timeout {
            Some(limit) => tokio::time::timeout(limit, pending)
                .await
                .map_err(|_| NodeError::Timeout(limit))?,
            None => pending.await,
        };
        result.map_err(|e| NodeError::Connect(describe(&e)))
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
    /// Counts the bytes as they pass, when relayed to a client.
    sent: Option<metrics::Counter>,
}

impl NodeResponseBody {
    /// Adds the body's bytes to `counter` as they are read.
    pub fn count_into(&mut self, counter: metrics::Counter) {
        self.sent = Some(counter);
    }
}

impl Body for NodeResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Some(counter), Poll::Ready(Some(Ok(frame)))) = (&self.sent, &polled) {
            if let Some(data) = frame.data_ref() {
                counter.increment(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
