//! Connections to nodes: how they are opened, the per-node keep-alive pool,
//! and sending one request.
//!
//! Each [`Node`] keeps its own pool of HTTP/1 connections ([`Pool`]), so a
//! busy router reuses connections instead of filling the ephemeral port
//! range with TIME_WAIT sockets, and a routing table swap that keeps a node
//! keeps its connections. A request takes an idle connection that is ready
//! and puts it straight back: hyper answers "not ready" for it until its
//! exchange is over, so the next request takes another one or opens a new
//! connection. No task is spawned per request and nothing is looked up by
//! host; one task per connection drives it.
//!
//! How a connection is opened is the node's [`NodeClient`]: plain TCP for
//! `http://` nodes, or TLS verified as its cluster's
//! [`Trust`](crate::tls::Trust) says; clusters that trust the same way
//! share one TLS connector. [`Clients`] hands them out when a routing table
//! is built, reusing the previous table's. Request bodies are [`Payload`]s:
//! reference-counted chunks, cloned per node without copying.
//!
//! * `connect`: the connectors, the handshake and [`Clients`].
//! * `pool`: the [`Pool`].
//! * here: [`Node::send`] and the exchange on a pooled connection,
//!   [`NodeError`] and how a failure is described, [`NodeResponseBody`].

mod connect;
mod pool;
#[cfg(test)]
mod tests;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use super::{InFlight, Node, RequestKind};
use crate::payload::{Payload, PayloadBody};

pub use connect::{
    build, build_tls, Clients, ClusterClients, HttpClient, HttpsClient, NodeClient, CONNECT_TIMEOUT,
};
pub use pool::{Pool, IDLE_TIMEOUT, MAX_POOLED};

/// Why a node did not answer.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Connect(String),
    #[error("bad request towards node: {0}")]
    Request(String),
    /// The node answered, but not in HTTP the client can read: unlike a
    /// connection failure, sending the same request again gets the same.
    #[error("unreadable answer: {0}")]
    Unreadable(String),
}

impl NodeError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, NodeError::Timeout(_))
    }
}

/// An exchange that failed: an answer that could not be parsed is
/// [`NodeError::Unreadable`], anything else a connection failure.
fn exchange_failed(error: hyper::Error) -> NodeError {
    if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
        NodeError::Unreadable(describe(&error))
    } else {
        failed(&error)
    }
}

fn failed(error: &(dyn std::error::Error + 'static)) -> NodeError {
    NodeError::Connect(describe(error))
}

impl Node {
    /// Builds a request to this node for `path_and_query` (starting with
    /// `/`): a `&str`, or a [`Uri`] already parsed (shared by the nodes a
    /// write goes to).
    pub fn request<U>(&self, method: http::Method, path_and_query: U) -> http::request::Builder
    where
        U: TryInto<Uri>,
        U::Error: Into<http::Error>,
    {
        Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, self.host.clone())
    }

    /// Sends `request` and waits for the response head, at most `timeout`
    /// (connecting included).
    ///
    /// Counts the request in the node's metrics under `kind`; a failure is
    /// no connection, a timeout or a 5xx.
    pub async fn send(
        self: &Arc<Self>,
        kind: RequestKind,
        request: http::request::Builder,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Result<Response<NodeResponseBody>, NodeError> {
        let bytes = payload.len();
        let request = request
            .body(PayloadBody::new(payload))
            .map_err(|e| NodeError::Request(e.to_string()))?;
        let guard = self.start_request();
        let started = Instant::now();
        let result = match timeout {
            Some(limit) => tokio::time::timeout(limit, self.exchange(request))
                .await
                .map_err(|_| NodeError::Timeout(limit))
                .and_then(|r| r),
            None => self.exchange(request).await,
        };
        let failed = result
            .as_ref()
            .map_or(true, |response| response.status().is_server_error());
        self.metrics()
            .request(kind, bytes, started.elapsed(), failed);
        Ok(result?.map(|body| NodeResponseBody {
            held: None,
            inner: body,
            _guard: guard,
            sent: None,
        }))
    }

    /// One exchange on a pooled connection, or on a new one when none is
    /// ready. A request that a pooled connection could not take (it closed
    /// before the request was written) goes once more on a new connection.
    async fn exchange(
        &self,
        request: Request<PayloadBody>,
    ) -> Result<Response<Incoming>, NodeError> {
        // connecting is boxed: it is rare, and its future is large
        let (mut sender, pooled) = match self.pool.take() {
            Some(sender) => (sender, true),
            None => (Box::pin(self.connect()).await?, false),
        };
        let pending = sender.try_send_request(request);
        self.pool.put(sender);
        let mut error = match pending.await {
            Ok(response) => return Ok(response),
            Err(error) => error,
        };
        let unsent = error.take_message();
        match unsent {
            Some(request) if pooled => {
                let mut sender = Box::pin(self.connect()).await?;
                let pending = sender.send_request(request);
                self.pool.put(sender);
                pending.await.map_err(exchange_failed)
            }
            _ => Err(exchange_failed(error.into_error())),
        }
    }

    async fn connect(&self) -> Result<SendRequest<PayloadBody>, NodeError> {
        self.client.connect(self.connect_uri.clone()).await
    }

    /// The node's connection pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// The most specific message in an error chain ("connection refused", …);
/// a failed TLS handshake says so ("TLS handshake failed: invalid peer
/// certificate: UnknownIssuer").
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    if let Some(tls) = tls_error(error) {
        return format!("TLS handshake failed: {tls}");
    }
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        if let Some(tls) = tls_error(inner) {
            return format!("TLS handshake failed: {tls}");
        }
        message = inner.to_string();
        source = inner.source();
    }
    message
}

/// The rustls error inside (nested) I/O errors, as the TLS connector reports it.
fn tls_error<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut inner = error;
    while let Some(io) = inner.downcast_ref::<std::io::Error>() {
        inner = io.get_ref()?;
    }
    inner.downcast_ref::<rustls::Error>()
}

/// A node's response body; the node counts as busy until it is dropped.
#[derive(Debug)]
pub struct NodeResponseBody {
    inner: Incoming,
    _guard: InFlight,
    /// Counts the bytes as they pass, when relayed to a client.
    sent: Option<metrics::Counter>,
    /// Whatever must live as long as the answer (a client's query permit).
    held: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl NodeResponseBody {
    /// Keeps `value` until the body is dropped: sent to its end, or cut off.
    pub fn hold(&mut self, value: impl std::any::Any + Send + Sync) {
        self.held = Some(Box::new(value));
    }

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
