//! The pooled HTTP clients towards nodes, and sending one request.
//!
//! Every `http://` node shares one keep-alive pool (hyper keeps idle
//! connections per host), so a busy router reuses connections instead of
//! filling the ephemeral port range with TIME_WAIT sockets. `https://` nodes
//! go through a TLS client built for their cluster's [`Trust`]; clusters
//! that trust the same way share it. Each [`Node`] carries the client it
//! must use ([`NodeClient`]); [`Clients`] hands them out when a routing
//! table is built, reusing the previous table's so that reloads keep the
//! pools. Request bodies are [`Payload`]s: reference-counted chunks, cloned
//! per node without copying.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{InFlight, Node, RequestKind};
use crate::config::{ClusterConfig, NodeConfig};
use crate::payload::{Payload, PayloadBody};
use crate::tls::{TlsError, Trust};

/// The client shared by every `http://` node.
pub type HttpClient = Client<HttpConnector, PayloadBody>;

/// A client for `https://` nodes verified one way.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, PayloadBody>;

/// How long establishing a TCP connection to a node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the plain client with a keep-alive pool sized for heavy fan-out.
pub fn build() -> HttpClient {
    pool(connector())
}

/// Builds a client for `https://` nodes that verifies them as `trust` says.
pub fn build_tls(trust: &Trust) -> Result<HttpsClient, TlsError> {
    let mut tcp = connector();
    // the TLS connector hands its https:// addresses to this one
    tcp.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(trust.client_config()?)
        .https_only()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(pool(https))
}

fn connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector
}

fn pool<C>(connector: C) -> Client<C, PayloadBody>
where
    C: hyper_util::client::legacy::connect::Connect + Clone,
{
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// The client one node sends through.
#[derive(Debug, Clone)]
pub enum NodeClient {
    Plain(HttpClient),
    Tls(Arc<HttpsClient>),
}

impl NodeClient {
    /// Whether both are the same client (plain clients of one table always are).
    pub fn same(&self, other: &NodeClient) -> bool {
        match (self, other) {
            (NodeClient::Plain(_), NodeClient::Plain(_)) => true,
            (NodeClient::Tls(a), NodeClient::Tls(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn request(&self, request: Request<PayloadBody>) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            NodeClient::Plain(client) => client.request(request),
            NodeClient::Tls(client) => client.request(request),
        }
    }
}

/// The clients of one routing table's nodes: the plain client every
/// `http://` node shares and one TLS client per distinct [`Trust`].
#[derive(Debug)]
pub struct Clients {
    plain: HttpClient,
    tls: Vec<(Trust, Arc<HttpsClient>)>,
    /// Clusters whose node certificates are not verified.
    insecure: Vec<String>,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            plain: build(),
            tls: Vec::new(),
            insecure: Vec::new(),
        }
    }
}

impl Clients {
    /// The clients for a new table, sharing the plain client of `previous`.
    pub fn after(previous: Option<&Clients>) -> Clients {
        match previous {
            Some(previous) => Clients {
                plain: previous.plain.clone(),
                tls: Vec::new(),
                insecure: Vec::new(),
            },
            None => Clients::default(),
        }
    }

    /// The clients of `cluster`'s nodes. Reads its `ca_file` when it has
    /// `https://` nodes (or discovers them), and reuses the TLS client of
    /// `previous` that trusts the same certificates. Warns once when the
    /// cluster starts skipping certificate verification.
    pub fn for_cluster(
        &mut self,
        cluster: &ClusterConfig,
        previous: Option<&Clients>,
    ) -> Result<ClusterClients, TlsError> {
        let tls = match uses_tls(cluster) {
            true => Some(self.tls_client(cluster, previous)?),
            false => None,
        };
        Ok(ClusterClients {
            plain: self.plain.clone(),
            tls,
        })
    }

    fn tls_client(
        &mut self,
        cluster: &ClusterConfig,
        previous: Option<&Clients>,
    ) -> Result<Arc<HttpsClient>, TlsError> {
        let trust = Trust::load(&cluster.tls)?;
        if trust == Trust::Anything {
            let known = previous.is_some_and(|p| p.insecure.contains(&cluster.name));
            if !known {
                tracing::warn!(cluster = %cluster.name, "insecure_skip_verify: the certificates of this cluster's https nodes are not verified");
            }
            self.insecure.push(cluster.name.clone());
        }
        let reusable = self
            .tls
            .iter()
            .chain(previous.map(|p| p.tls.as_slice()).unwrap_or_default())
            .find(|(t, _)| *t == trust)
            .map(|(_, client)| client.clone());
        let client = match reusable {
            Some(client) => client,
            None => Arc::new(build_tls(&trust)?),
        };
        if !self.tls.iter().any(|(t, _)| *t == trust) {
            self.tls.push((trust, client.clone()));
        }
        Ok(client)
    }
}

/// Whether `cluster` has, or may discover, `https://` nodes.
fn uses_tls(cluster: &ClusterConfig) -> bool {
    cluster
        .srv
        .as_ref()
        .is_some_and(|srv| srv.scheme == "https")
        || cluster
            .nodes
            .iter()
            .any(|n| n.url.scheme_str() == Some("https"))
}

/// The clients of one cluster's nodes.
#[derive(Debug)]
pub struct ClusterClients {
    plain: HttpClient,
    tls: Option<Arc<HttpsClient>>,
}

impl ClusterClients {
    /// The client `node` sends through.
    pub fn for_node(&self, node: &NodeConfig) -> NodeClient {
        match (&self.tls, node.url.scheme_str()) {
            (Some(tls), Some("https")) => NodeClient::Tls(tls.clone()),
            _ => NodeClient::Plain(self.plain.clone()),
        }
    }
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
        let result = self.exchange(request, timeout).await;
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
        request: Request<PayloadBody>,
        timeout: Option<Duration>,
    ) -> Result<Response<Incoming>, NodeError> {
        let pending = self.client.request(request);
        let result = match timeout {
            Some(limit) => tokio::time::timeout(limit, pending)
                .await
                .map_err(|_| NodeError::Timeout(limit))?,
            None => pending.await,
        };
        result.map_err(|e| NodeError::Connect(describe(&e)))
    }
}

/// The most specific message in an error chain ("connection refused", …);
/// a failed TLS handshake says so ("TLS handshake failed: invalid peer
/// certificate: UnknownIssuer").
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
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
