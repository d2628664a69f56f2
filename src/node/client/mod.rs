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
//! `http://` nodes, or TLS verified as its cluster's [`Trust`] says;
//! clusters that trust the same way share one TLS connector. [`Clients`]
//! hands them out when a routing table is built, reusing the previous
//! table's. Request bodies are [`Payload`]s: reference-counted chunks, cloned
//! per node without copying.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use super::{InFlight, Node, RequestKind};
use crate::config::{ClusterConfig, NodeConfig};
use crate::payload::{Payload, PayloadBody};
use crate::tls::{TlsError, Trust};

/// Opens plain TCP connections to `http://` nodes.
pub type HttpClient = HttpConnector;

/// Opens TLS connections to `https://` nodes, verified one way.
pub type HttpsClient = HttpsConnector<HttpConnector>;

/// How long establishing a TCP connection to a node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection may sit unused in a pool before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most connections a node's pool keeps.
pub const MAX_POOLED: usize = 256;

/// Builds the connector for plain `http://` nodes.
pub fn build() -> HttpClient {
    connector()
}

/// Builds a connector for `https://` nodes that verifies them as `trust` says.
pub fn build_tls(trust: &Trust) -> Result<HttpsClient, TlsError> {
    let mut tcp = connector();
    // the TLS connector hands its https:// addresses to this one
    tcp.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(trust.client_config()?)
        .https_only()
        .enable_http1()
        .wrap_connector(tcp))
}

fn connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector
}

/// How one node's connections are opened.
#[derive(Debug, Clone)]
pub enum NodeClient {
    Plain(HttpClient),
    Tls(Arc<HttpsClient>),
}

impl NodeClient {
    /// Whether both open connections the same way (plain ones always do).
    pub fn same(&self, other: &NodeClient) -> bool {
        match (self, other) {
            (NodeClient::Plain(_), NodeClient::Plain(_)) => true,
            (NodeClient::Tls(a), NodeClient::Tls(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Opens a connection to `uri` (`scheme://host:port/`) and starts the
    /// task that drives it.
    async fn connect(&self, uri: Uri) -> Result<SendRequest<PayloadBody>, NodeError> {
        match self {
            NodeClient::Plain(connector) => {
                let io = connector.clone().call(uri).await.map_err(|e| failed(&e))?;
                handshake(io).await
            }
            NodeClient::Tls(connector) => {
                let io = (**connector)
                    .clone()
                    .call(uri)
                    .await
                    .map_err(|e| failed(&*e))?;
                handshake(io).await
            }
        }
    }
}

/// Speaks HTTP/1 over `io`; the connection lives in its own task until the
/// node or the pool closes it.
async fn handshake<T>(io: T) -> Result<SendRequest<PayloadBody>, NodeError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // InfluxDB copies a rejected line into `X-Influxdb-Error` raw, control
    // bytes included: such a header line is dropped, and the answer (a 400
    // with the error in its body too) is still read as the answer it is
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .ignore_invalid_headers_in_responses(true)
        .handshake(io)
        .await
        .map_err(|e| failed(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "node connection ended with an error");
        }
    });
    Ok(sender)
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

/// One node's keep-alive connections, oldest use first.
///
/// A connection goes back into the pool as soon as its request is handed to
/// it; until its answer has been read, hyper reports it as not ready and
/// [`Pool::take`] passes over it. Closed connections and those unused for
/// [`IDLE_TIMEOUT`] are dropped when met.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<VecDeque<Pooled>>,
}

#[derive(Debug)]
struct Pooled {
    sender: SendRequest<PayloadBody>,
    used: Instant,
}

impl Pool {
    /// A connection that can take a request now, if the pool has one.
    fn take(&self) -> Option<SendRequest<PayloadBody>> {
        let mut idle = self.idle.lock().ok()?;
        let now = Instant::now();
        for _ in 0..idle.len() {
            let pooled = idle.pop_front()?;
            if pooled.sender.is_closed() || now.duration_since(pooled.used) > IDLE_TIMEOUT {
                continue;
            }
            if pooled.sender.is_ready() {
                return Some(pooled.sender);
            }
            idle.push_back(pooled);
        }
        None
    }

    /// Keeps `sender` for a later request, unless it is closed or the pool is full.
    fn put(&self, sender: SendRequest<PayloadBody>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_POOLED {
                idle.push_back(Pooled {
                    sender,
                    used: Instant::now(),
                });
            }
        }
    }

    /// How many connections the pool holds (busy or idle).
    pub fn len(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How the nodes of one routing table connect: the plain connector every
/// `http://` node shares and one TLS connector per distinct [`Trust`].
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
    /// The connectors for a new table, sharing the plain one of `previous`.
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
    /// `https://` nodes (or discovers them), and reuses the TLS connector of
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{Method, StatusCode};
    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// A node on 127.0.0.1 that answers every request 204 (closing the
    /// connection after each answer unless `keep_alive`), and counts the
    /// connections it accepted.
    async fn fake_node(keep_alive: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|request: Request<Incoming>| async move {
                        let _ = request.into_body().collect().await;
                        let mut response = Response::new(http_body_util::Empty::<Bytes>::new());
                        *response.status_mut() = StatusCode::NO_CONTENT;
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, accepted)
    }

    async fn write(node: &Arc<Node>) -> StatusCode {
        let request = node.request(Method::POST, "/write?db=x");
        let response = node
            .send(
                RequestKind::Write,
                request,
                Payload::from("cpu v=1\n"),
                Some(Duration::from_secs(5)),
            )
            .await
            .expect("the node answers");
        let status = response.status();
        let _ = response.into_body().collect().await;
        status
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (url, accepted) = fake_node(true).await;
        let node = crate::node::test_node(&url, dir.path());
        for _ in 0..50 {
            assert_eq!(write(&node).await, StatusCode::NO_CONTENT);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(node.pool().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_open_a_connection_each_and_then_reuse_them() {
        let dir = tempfile::tempdir().unwrap();
        let (url, accepted) = fake_node(true).await;
        let node = crate::node::test_node(&url, dir.path());
        let writes = (0..16).map(|_| write(&node));
        for status in futures_util::future::join_all(writes).await {
            assert_eq!(status, StatusCode::NO_CONTENT);
        }
        let opened = accepted.load(Ordering::SeqCst);
        assert!((1..=16).contains(&opened), "{opened} connections");
        for _ in 0..50 {
            assert_eq!(write(&node).await, StatusCode::NO_CONTENT);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), opened, "no new connection");
    }

    #[tokio::test]
    async fn connections_the_node_closes_are_replaced_without_failing_a_request() {
        let dir = tempfile::tempdir().unwrap();
        let (url, accepted) = fake_node(false).await;
        let node = crate::node::test_node(&url, dir.path());
        for _ in 0..20 {
            assert_eq!(write(&node).await, StatusCode::NO_CONTENT);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 20);
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let node = crate::node::test_node(&url, dir.path());
        let request = node.request(Method::GET, "/ping");
        let error = node
            .send(
                RequestKind::Health,
                request,
                Payload::default(),
                Some(Duration::from_secs(5)),
            )
            .await
            .unwrap_err();
        assert!(
            error.to_string().to_lowercase().contains("refused"),
            "{error}"
        );
        assert!(node.pool().is_empty());
    }
}
