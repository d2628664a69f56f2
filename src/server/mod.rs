//! The HTTP side: listener, connection limit, dispatch, graceful shutdown.
//!
//! * [`write`](mod@write): `/write` and `/api/v2/write`: parameters and targets.
//! * [`fanout`]: delivering a write to each node or its queue, and consistency.
//! * [`coalesce`]: merging small concurrent writes for a node into one request.
//! * [`query`]: `/query`, read routing with failover.
//! * [`admin`]: admin statements to every node, queued for those that are down.
//! * [`spread`]: reads spanning clusters, answered by one node per cluster and merged.
//! * [`targets`]: which clusters a query concerns.
//! * [`status`]: `/ping`, `/health`, `/status`, `/metrics`.
//! * [`overrides`]: node mode overrides from Redis on top of the running
//!   configuration, and `[control] auto_recover`.
//! * [`body`]: reading request bodies within their limits.
//! * [`limits`]: `[limits]`: rates per client address, user and database,
//!   and concurrent queries per client (429 with `Retry-After`).
//! * [`prom`]: `/api/v1/prom/write` and `/api/v1/prom/read`, Prometheus
//!   remote storage through the nodes' own endpoints.
//! * [`udp`]: line protocol datagrams on `server.udp_bind`, into the same write path.
//! * [`error`]: handler errors and the one function that renders them.
//! * [`head`]: request heads hyper cannot take (up to 1 MiB, any number of
//!   headers, query strings over 64 KiB), replaced on the way in and put
//!   back before dispatch.
//! * [`tls`]: HTTPS: the TLS handshake before HTTP, when `tls_cert` is set.
//!
//! A semaphore permit is taken before `accept`, so at most
//! `server.max_connections` connections are open (a connection still in its
//! TLS handshake counts). Every request is counted in [`crate::monitor`] by
//! endpoint and status class when it is answered. Shutdown stops accepting
//! (and reading UDP datagrams), lets in-flight requests finish within
//! `server.shutdown_timeout`, and logs when the deadline cut connections off.

pub mod body;
pub mod broadcast;
pub mod coalesce;
pub mod error;
pub mod fanout;
pub mod forward;
pub mod head;
pub mod limits;
pub mod nodes;
pub mod overrides;
mod own;
pub mod prom;
pub mod query;
pub mod reload;
mod schema_first;
pub mod spread;
pub mod status;
mod swap;
pub mod targets;
pub mod tls;
pub mod udp;
pub mod write;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::monitor::{Endpoint, Monitor};
use crate::node::NodeResponseBody;
use crate::routing::{LiveTable, RoutingTable};
use error::ApiError;

/// What every response body is: the router's own bytes, or a node's stream.
pub type ResponseBody = Either<Full<Bytes>, NodeResponseBody>;

/// Wraps the router's own body bytes.
pub fn full(body: Full<Bytes>) -> ResponseBody {
    Either::Left(body)
}

/// State shared by every request.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub routing: LiveTable,
    /// The listener's TLS acceptor when `tls_cert` and `tls_key` are set.
    pub https: Option<tls::Https>,
    pub started: Instant,
    /// Node sends that outlive the request that started them (a write answered
    /// at consistency `one` while slower nodes are still being written to).
    pub background: TaskTracker,
    /// Queues on disk of nodes the routing table no longer has: kept, reported.
    pub orphans: Vec<crate::routing::orphans::Orphan>,
    /// Health checkers and replayers of the nodes in the live table.
    pub node_tasks: nodes::NodeTasks,
    /// Routing table swaps and refusals, for `/status`.
    pub reloads: reload::Reloads,
    /// Node mode overrides (Redis) and auto-recover holds applied to the table.
    pub overrides: overrides::NodeOverrides,
    /// This router's metrics and events (its own recorder; see [`crate::monitor`]).
    pub monitor: Monitor,
    /// The config file the routing table is reloaded from, if any.
    pub config_file: Option<PathBuf>,
    /// The UDP input (`server.udp_bind`): socket, receive loop and counters.
    pub udp: udp::Udp,
    /// The configuration the live routing table was built from (with the
    /// nodes discovered through DNS SRV); see [`reload::running_config`].
    running: std::sync::Mutex<Config>,
    /// Stops the routing sources at shutdown.
    stop_sources: tokio::sync::watch::Sender<bool>,
    /// Merges small writes per node when `[write] coalesce_delay` is set.
    pub coalescer: Option<coalesce::Coalescer>,
    /// The `[limits]` in force; `None` when none is set.
    pub limiter: Option<limits::Limiter>,
    /// A routing table held until clusters it newly targets have the schema.
    schema_first: schema_first::Gate,
}

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot open a node queue: {0}")]
    Queue(#[from] crate::queue::QueueError),
    #[error("invalid configuration:\n{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot serve HTTPS: {0}")]
    ListenerTls(Box<crate::tls::TlsError>),
    #[error("cannot set up TLS towards the nodes of cluster {cluster:?}: {error}")]
    NodeTls {
        cluster: String,
        error: Box<crate::tls::TlsError>,
    },
}

impl From<crate::routing::BuildError> for StartError {
    fn from(error: crate::routing::BuildError) -> Self {
        match error {
            crate::routing::BuildError::Queue(e) => StartError::Queue(e),
            crate::routing::BuildError::Tls { cluster, error } => {
                StartError::NodeTls { cluster, error }
            }
        }
    }
}

impl Shared {
    /// Builds the shared state and the first routing table from `config`,
    /// opening every node's queue and reading the TLS files.
    pub fn new(
        config: Config,
        source: &str,
        config_file: Option<PathBuf>,
    ) -> Result<Arc<Shared>, StartError> {
        let https = match &config.server.tls {
            Some(files) => {
                Some(tls::Https::new(files).map_err(|e| StartError::ListenerTls(Box::new(e)))?)
            }
            None => None,
        };
        let monitor = Monitor::new(config.metrics.self_database.as_deref());
        let table = RoutingTable::build(&config, 1, source, None, &monitor)?;
        let orphans = crate::routing::orphans::find(&config);
        Ok(Arc::new(Shared {
            routing: LiveTable::new(table),
            https,
            started: Instant::now(),
            background: TaskTracker::new(),
            orphans,
            node_tasks: nodes::NodeTasks::default(),
            reloads: reload::Reloads::default(),
            overrides: overrides::NodeOverrides::default(),
            monitor,
            config_file,
            udp: udp::Udp::default(),
            stop_sources: tokio::sync::watch::channel(false).0,
            running: std::sync::Mutex::new(config.clone()),
            coalescer: config.write.coalesce.map(coalesce::Coalescer::new),
            limiter: limits::Limiter::new(&config.limits),
            schema_first: schema_first::Gate::default(),
            config,
        }))
    }

    /// Starts the routing sources (the config file watcher and SIGHUP, or
    /// Redis) now, so that a change right after start is not missed. With
    /// `source = "redis"` the table is first read from Redis (or its cache),
    /// and with `redis_url` the node mode overrides too. `addr` is the
    /// listener's, for this router's id.
    async fn start_sources(self: &Arc<Self>, addr: SocketAddr) {
        self.overrides
            .set_router_id(crate::routing::source::overrides::router_id(addr.port()));
        start_sources(self, self.stop_sources.subscribe()).await;
        self.overrides.arm(&self.config);
    }
}

/// A router started with [`spawn`]; stops when [`RunningRouter::shutdown`] is called or it is dropped.
#[derive(Debug)]
pub struct RunningRouter {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningRouter {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://` when the listener has TLS.
    pub fn url(&self) -> String {
        let scheme = if self.shared.https.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The address UDP datagrams are read on, when `server.udp_bind` is set.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.shared.udp.addr()
    }

    /// Stops accepting, drains in-flight requests, and waits for the end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningRouter {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds `config.server.bind` and serves in a background task.
pub async fn spawn(config: Config, source: &str) -> Result<RunningRouter, StartError> {
    spawn_shared(config, source, None).await
}

/// Like [`spawn`], with the configuration read from `path`, which is then
/// watched for routing changes (and re-read on SIGHUP).
pub async fn spawn_watching(path: &Path) -> Result<RunningRouter, StartError> {
    let loaded = crate::config::load(Some(path))?;
    spawn_shared(
        loaded.config,
        &loaded.source.to_string(),
        Some(path.to_path_buf()),
    )
    .await
}

async fn spawn_shared(
    config: Config,
    source: &str,
    file: Option<PathBuf>,
) -> Result<RunningRouter, StartError> {
    let listener = bind(&config).await?;
    let addr = listener.local_addr().map_err(|error| StartError::Bind {
        addr: config.server.bind,
        error,
    })?;
    let shared = Shared::new(config, source, file)?;
    shared.udp.bind(&shared.config).await?;
    shared.start_sources(addr).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, shared.clone(), async move {
        let _ = stopped.await;
    }));
    Ok(RunningRouter {
        addr,
        shared,
        stop: Some(stop),
        task: Some(task),
    })
}

/// Opens the queues, binds the configured address and serves until
/// `shutdown` completes; the routing table follows `config_file` if given.
///
/// This is the process's one router (the binary's), so its metrics
/// recorder also becomes the process-global `metrics` recorder.
pub async fn run(
    config: Config,
    source: &str,
    config_file: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let shared = Shared::new(config, source, config_file)?;
    shared.monitor.install_global();
    let listener = bind(&shared.config).await?;
    let addr = listener.local_addr().map_err(|error| StartError::Bind {
        addr: shared.config.server.bind,
        error,
    })?;
    shared.udp.bind(&shared.config).await?;
    shared.start_sources(addr).await;
    tracing::info!(%addr, "listening");
    let limits = shared.config.limits.describe();
    tracing::info!(%limits, "rate limits");
    serve(listener, shared, shutdown).await;
    Ok(())
}

async fn bind(config: &Config) -> Result<TcpListener, StartError> {
    let addr = config.server.bind;
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Bind { addr, error })
}

/// Accepts connections on `listener` until `shutdown`, then drains.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    shared.node_tasks.sync(&shared, &shared.routing.load());
    udp::Udp::start(&shared);
    let monitoring = start_monitoring(&shared);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(shared.config.server.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => { accept_failed(e).await; continue; }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        match &shared.https {
            None => {
                let connection = serve_connection(&shared, graceful.watcher(), stream, peer);
                tokio::spawn(async move {
                    connection.await;
                    drop(permit);
                });
            }
            Some(https) => https.accept(&shared, graceful.watcher(), stream, permit),
        }
    }
    drop(listener);
    shared.udp.stop().await;
    drain(graceful, &shared).await;
    let _ = shared.stop_sources.send(true);
    stop_monitoring(monitoring).await;
    shared.node_tasks.stop_all().await;
    for node in shared.routing.load().nodes() {
        node.queue().close();
    }
}

/// Starts the metrics upkeep and, with `self_database`, self-monitoring;
/// both stop with the routing sources.
fn start_monitoring(shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    let upkeep = {
        let (shared, stop) = (shared.clone(), shared.stop_sources.subscribe());
        tokio::spawn(async move { shared.monitor.run_upkeep(stop).await })
    };
    let writer = crate::monitor::self_monitor::start(
        Arc::new(own::OwnTraffic(shared.clone())),
        &shared.config.metrics,
        shared.stop_sources.subscribe(),
    );
    std::iter::once(upkeep).chain(writer).collect()
}

/// Waits a little for the monitoring tasks (a self-monitoring write may be
/// under way), then cuts them off.
async fn stop_monitoring(tasks: Vec<JoinHandle<()>>) {
    for mut task in tasks {
        if tokio::time::timeout(MONITORING_STOP_GRACE, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// How long shutdown waits for a self-monitoring write in progress.
const MONITORING_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves HTTP/1.1 on one connection (a TCP stream, or a TLS stream over
/// one) from `peer` until it closes or `watcher` sees shutdown.
fn serve_connection<I>(
    shared: &Arc<Shared>,
    watcher: Watcher,
    io: I,
    peer: SocketAddr,
) -> impl Future<Output = ()> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let open = shared.monitor.connection_opened();
    let service_state = shared.clone();
    let stash = Arc::new(head::Stash::default());
    let io = head::Filtered::new(io, stash.clone());
    // only the limits need to know who is asking
    let client = shared
        .limiter
        .as_ref()
        .map(|_| limits::ClientAddr(peer.ip().to_canonical()));
    let service = service_fn(move |request| {
        let shared = service_state.clone();
        let mut restored = head::restore(&stash, request);
        if let (Some(client), Ok(request)) = (client, &mut restored) {
            request.extensions_mut().insert(client);
        }
        async move {
            Ok::<_, Infallible>(match restored {
                Ok(request) => handle(shared, request).await,
                Err(e) => {
                    let mut response = e.into_response();
                    status::stamp_headers(&shared, response.headers_mut());
                    response
                }
            })
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.server.read_timeout)
        .max_buf_size(READ_BUFFER_MAX)
        .serve_connection(TokioIo::new(io), service);
    let connection = watcher.watch(connection);
    async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        drop(open);
    }
}

/// The largest read buffer of a client connection. Body chunks are cut from
/// it and kept (not copied) until every node has the write, so this is the
/// size of the blocks a large body is held in. hyper's default (about
/// 400 KB) made glibc serve each body from blocks above its mmap threshold,
/// which it then raises and keeps on its heap: 53 MB peak RSS under 32
/// connections of 500 KB batches, against 30 MB with 64 KiB blocks, at the
/// same CPU cost (PERFORMANCE.md).
const READ_BUFFER_MAX: usize = 64 * 1024;

/// Starts the DNS SRV lookups of clusters with `srv`, and the config file
/// watcher (and SIGHUP handler) when there is a file, or with
/// `source = "redis"` the Redis follower (which reads Redis, or its cache,
/// before returning).
async fn start_sources(shared: &Arc<Shared>, stop: tokio::sync::watch::Receiver<bool>) {
    let sink: Arc<dyn crate::routing::source::Sink> = Arc::new(reload::Publisher(shared.clone()));
    crate::routing::source::dns::start(&sink, stop.clone());
    let id = shared.overrides.router_id().unwrap_or("router").to_string();
    let overrides =
        crate::routing::source::overrides::start(&sink, &shared.config, id, stop.clone()).await;
    if let Some(wake) = &overrides {
        shared.overrides.set_wake(wake.clone());
    }
    let routing = &shared.config.routing;
    if routing.source == crate::config::RoutingSource::Redis {
        crate::routing::source::redis::start(&sink, &shared.config, overrides, stop).await;
        return;
    }
    if let (Some(wake), true) = (overrides, routing.amqp_url_set) {
        crate::routing::source::redis::listen_for_overrides(
            &sink,
            &routing.amqp_url,
            &routing.key_prefix,
            wake,
            stop.clone(),
        );
    }
    let Some(path) = shared.config_file.clone() else {
        return;
    };
    let (watched, origin) = (shared.config.routing.watch, path.display().to_string());
    let target = shared.clone();
    let apply = move |text: String, trigger| match reload::apply(&target, &text, &origin) {
        reload::Applied::Swapped(version) => {
            tracing::info!(version, ?trigger, "routing table swapped")
        }
        reload::Applied::Unchanged => {
            tracing::debug!(?trigger, "config re-read; routing unchanged")
        }
        reload::Applied::Refused(_) => {}
    };
    if let Err(e) = crate::routing::source::file::start(path, watched, apply, stop) {
        tracing::error!(error = %e, "the config file is not watched; restart to change routing");
    }
}

async fn accept_failed(error: std::io::Error) {
    // EMFILE and friends: back off a little instead of spinning
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

/// Lets open connections and background node sends finish, within one deadline.
async fn drain(graceful: GracefulShutdown, shared: &Shared) {
    let deadline = shared.config.server.shutdown_timeout;
    shared.background.close();
    let everything = async {
        graceful.shutdown().await;
        shared.background.wait().await;
    };
    match tokio::time::timeout(deadline, everything).await {
        Ok(()) => tracing::info!("all connections closed and node sends finished"),
        Err(_) => tracing::warn!(
            ?deadline,
            unfinished_node_sends = shared.background.len(),
            "shutdown deadline reached; open connections and node sends were cut"
        ),
    }
}

/// Routes one request to its handler (once the `[limits]` let it in),
/// stamps InfluxDB's headers on the answer and counts it.
pub async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<ResponseBody> {
    let started = Instant::now();
    let endpoint = Endpoint::of(request.uri().path());
    let result = match &shared.limiter {
        None => dispatch(&shared, request).await,
        Some(limiter) => dispatch_limited(&shared, limiter, endpoint, request).await,
    };
    let mut response = result.unwrap_or_else(ApiError::into_response);
    status::stamp_headers(&shared, response.headers_mut());
    count(&shared.monitor, endpoint, started, &mut response);
    response
}

/// Counts an answer: status class, time to answer, and its body bytes (as
/// they stream, for a node's answer relayed).
fn count(
    monitor: &Monitor,
    endpoint: Endpoint,
    started: Instant,
    response: &mut Response<ResponseBody>,
) {
    let http = &monitor.http;
    http.answered(endpoint, response.status(), started.elapsed());
    match response.body_mut() {
        Either::Left(own) => {
            let size = hyper::body::Body::size_hint(own).exact().unwrap_or(0);
            http.sent(endpoint, size);
        }
        Either::Right(relayed) => relayed.count_into(http.sent_counter(endpoint)),
    }
}

/// [`dispatch`] for a request that `client_requests` and `client_queries`
/// let in; a query's permit is held until its answer has been sent.
async fn dispatch_limited(
    shared: &Arc<Shared>,
    limiter: &limits::Limiter,
    endpoint: Endpoint,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let client = request.extensions().get::<limits::ClientAddr>().copied();
    let permit = match client {
        Some(client) => limiter
            .admit(client.0, endpoint)
            .map_err(|refusal| limits::refuse(shared, refusal))?,
        None => None,
    };
    let mut response = dispatch(shared, request).await?;
    if let (Some(permit), Either::Right(streamed)) = (permit, response.body_mut()) {
        streamed.hold(permit);
    }
    Ok(response)
}

async fn dispatch(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let started = tokio::time::Instant::now();
    let limits = body::Limits {
        max_size: shared.config.server.max_body_size,
        deadline: started + shared.config.server.read_timeout,
        read_timeout: shared.config.server.read_timeout,
    };
    let method = request.method().clone();
    match (request.uri().path(), method) {
        ("/ping", Method::GET | Method::HEAD) => Ok(status::ping(shared, &request)),
        ("/write", Method::POST) => write::handle(shared, request, write::Api::V1, limits).await,
        ("/api/v2/write", Method::POST) => {
            write::handle(shared, request, write::Api::V2, limits).await
        }
        ("/query", Method::GET | Method::POST) => query::handle(shared, request, limits).await,
        ("/api/v1/prom/write", Method::POST) => prom::write(shared, request, limits).await,
        ("/api/v1/prom/read", Method::GET | Method::POST) => {
            prom::read(shared, request, limits).await
        }
        ("/health", Method::GET | Method::HEAD) => Ok(status::health(shared)),
        ("/status", Method::GET) => Ok(status::status(shared)),
        ("/metrics", _) if !shared.config.metrics.prometheus => Err(ApiError::NotFound),
        ("/metrics", Method::GET) => Ok(status::metrics(shared)),
        (
            "/ping" | "/write" | "/api/v2/write" | "/query" | "/api/v1/prom/write"
            | "/api/v1/prom/read" | "/health" | "/status" | "/metrics",
            _,
        ) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound),
    }
}

/// The value of `X-Influxdb-Version` when no node has told us its own.
pub const FALLBACK_VERSION: HeaderValue = HeaderValue::from_static("unknown");
