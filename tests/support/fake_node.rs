//! An in-process fake InfluxDB node, for faults a real server cannot show on
//! demand.
//!
//! A [`FakeNode`] is a hyper HTTP/1.1 server on `127.0.0.1:0`, spawned on the
//! current tokio runtime. It answers `/ping`, `/write` and `/query` according
//! to its [`Behaviour`], which tests switch at run time, and records every
//! request it receives (method, path and query, headers, body) so that tests
//! can assert what the router forwarded. Dropping it stops the listener and
//! drops every open connection.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::{JoinHandle, JoinSet};

/// The version a fake node reports in `X-Influxdb-Version`.
pub const FAKE_VERSION: &str = "1.6.7-fake";

/// The body of a successful `/query` answer.
pub const OK_QUERY_BODY: &str = r#"{"results":[{"statement_id":0}]}"#;

/// The first (and only) chunk sent by [`Behaviour::ResetMidBody`]: the start
/// of a result that never ends.
pub const PARTIAL_QUERY_BODY: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","value"],"values":[["2024-01-01T00:00:00Z",1],"#;

/// How a [`FakeNode`] answers. Requests are always read in full and recorded
/// first, whatever the behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Like a healthy InfluxDB: `POST /write` → 204; `GET|HEAD /ping` → 204
    /// with `X-Influxdb-Version: 1.6.7-fake`; `GET|POST /query` → 200 with
    /// `{"results":[{"statement_id":0}]}`; anything else → 404.
    Ok,
    /// Every `/write` and `/query` is answered with this status and body
    /// (`application/json` if the body starts with `{`, else `text/plain`).
    /// `/ping` stays 204.
    Status(u16, &'static str),
    /// Every request (including `/ping`) waits this long, then is answered
    /// as in [`Behaviour::Ok`].
    Slow(Duration),
    /// Every request (including `/ping`) is read and recorded, and never
    /// answered; the connection stays open until the client gives up or the
    /// node is dropped.
    Stall,
    /// `/query` and `/api/v1/prom/read` get a 200 and headers at once and
    /// the body ([`OK_QUERY_BODY`]) only after this long: an answer that
    /// streams. Everything else is answered as in [`Behaviour::Ok`].
    SlowQueryBody(Duration),
    /// `/query` gets a 200 with chunked encoding and a first chunk holding
    /// [`PARTIAL_QUERY_BODY`], after which the connection is dropped without
    /// the final chunk. `/write` and `/ping` are answered as in
    /// [`Behaviour::Ok`].
    ResetMidBody,
}

/// One request as the fake node received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    /// Path and query string, e.g. `/write?db=telegraf&precision=s`.
    pub uri: String,
    pub headers: HeaderMap,
    /// The body as received (not decompressed).
    pub body: Bytes,
}

impl Recorded {
    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// The query string, if any.
    pub fn query_string(&self) -> Option<&str> {
        self.uri.split_once('?').map(|(_, q)| q)
    }

    /// A parameter from the query string or, failing that, from an
    /// `application/x-www-form-urlencoded` body (as `POST /query` sends).
    pub fn param(&self, name: &str) -> Option<String> {
        let find = |input: &[u8]| {
            form_urlencoded::parse(input)
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        if let Some(value) = self.query_string().and_then(|q| find(q.as_bytes())) {
            return Some(value);
        }
        let is_form = self
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            find(&self.body)
        } else {
            None
        }
    }

    /// A header's value, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The body as (lossy) UTF-8.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    requests: Mutex<Vec<Recorded>>,
}

/// A fake InfluxDB node on 127.0.0.1. Dropping it shuts it down.
pub struct FakeNode {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakeNode {
    /// Starts a fake node behaving as [`Behaviour::Ok`] on a fresh port.
    /// Must be called from within a tokio runtime, which it runs on.
    pub fn start() -> FakeNode {
        FakeNode::with_behaviour(Behaviour::Ok)
    }

    /// Starts a fake node with the given behaviour.
    pub fn with_behaviour(behaviour: Behaviour) -> FakeNode {
        FakeNode::bound(behaviour, Ipv4Addr::LOCALHOST, 0)
    }

    /// Starts a fake node behaving as [`Behaviour::Ok`] on `ip:port` (any
    /// loopback address: on Linux all of 127.0.0.0/8 is local).
    pub fn start_on(ip: Ipv4Addr, port: u16) -> FakeNode {
        FakeNode::bound(Behaviour::Ok, ip, port)
    }

    fn bound(behaviour: Behaviour, ip: Ipv4Addr, port: u16) -> FakeNode {
        if tokio::runtime::Handle::try_current().is_err() {
            panic!(
                "FakeNode must be started from within a tokio runtime (e.g. in a #[tokio::test])"
            );
        }
        let listener = std::net::TcpListener::bind((ip, port))
            .unwrap_or_else(|e| panic!("FakeNode: cannot bind {ip}:{port}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("FakeNode: cannot make the listener non-blocking");
        let addr = listener.local_addr().expect("FakeNode: local_addr");
        let listener = tokio::net::TcpListener::from_std(listener)
            .expect("FakeNode: cannot register the listener with tokio");
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            requests: Mutex::new(Vec::new()),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        FakeNode {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Changes how the node answers from the next request on (requests
    /// already waiting in `Slow` or `Stall` keep their behaviour).
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *lock(&self.shared.behaviour) = behaviour;
    }

    pub fn behaviour(&self) -> Behaviour {
        lock(&self.shared.behaviour).clone()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// The requests received so far whose path is `path` (e.g. `"/query"`).
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.path() == path)
            .cloned()
            .collect()
    }

    /// How many `/write` requests were received (whatever was answered).
    pub fn write_count(&self) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.path() == "/write")
            .count()
    }

    /// Every line of every `/write` body received, in arrival order.
    pub fn written_lines(&self) -> Vec<String> {
        let writes = self.requests_to("/write");
        writes
            .iter()
            .flat_map(|r| r.body_str().lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        // Dropping the accept loop drops the listener and its JoinSet, which
        // aborts every connection task.
        self.server.abort();
    }
}

impl std::fmt::Debug for FakeNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeNode")
            .field("addr", &self.addr)
            .field("behaviour", &self.behaviour())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        // Out of file descriptors or similar: back off.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| handle(request, shared.clone()));
                    // Errors are what some behaviours are for; nothing to report.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

/// The `User-Agent` of the router's authentication probe (src/node/health.rs).
const AUTH_PROBE_AGENT: &str = "influxdb-router auth probe";
type HandlerError = Box<dyn std::error::Error + Send + Sync>;

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, HandlerError> {
    let (parts, body) = request.into_parts();
    // A client that goes away mid-body ends the connection here.
    let body = body.collect().await?.to_bytes();
    let uri = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    // the router's health checker asks once whether the node checks
    // credentials; like its pings, that is not traffic the tests count
    let probe = parts
        .headers
        .get("user-agent")
        .is_some_and(|v| v == AUTH_PROBE_AGENT);
    if !probe {
        lock(&shared.requests).push(Recorded {
            method: parts.method.clone(),
            uri,
            headers: parts.headers,
            body,
        });
    }
    let behaviour = lock(&shared.behaviour).clone();
    let method = parts.method;
    let path = parts.uri.path();
    let is_api = path == "/write" || path == "/query";

    Ok(match behaviour {
        Behaviour::Ok => answer_ok(&method, path),
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            answer_ok(&method, path)
        }
        Behaviour::Stall => std::future::pending::<Response<Body>>().await,
        Behaviour::Status(status, text) if is_api => {
            let status =
                StatusCode::from_u16(status).expect("Behaviour::Status: invalid status code");
            let content_type = if text.trim_start().starts_with('{') {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            respond(status, Some(content_type), full(text))
        }
        Behaviour::Status(..) => answer_ok(&method, path),
        Behaviour::ResetMidBody if path == "/query" => {
            respond(StatusCode::OK, Some("application/json"), reset_mid_body())
        }
        Behaviour::ResetMidBody => answer_ok(&method, path),
        Behaviour::SlowQueryBody(delay) if path == "/query" || path == "/api/v1/prom/read" => {
            respond(StatusCode::OK, Some("application/json"), late(delay))
        }
        Behaviour::SlowQueryBody(_) => answer_ok(&method, path),
    })
}

fn answer_ok(method: &Method, path: &str) -> Response<Body> {
    match (path, method) {
        ("/ping", &Method::GET | &Method::HEAD) => respond(StatusCode::NO_CONTENT, None, empty()),
        ("/write", &Method::POST) => respond(StatusCode::NO_CONTENT, None, empty()),
        ("/query", &Method::GET | &Method::POST) => respond(
            StatusCode::OK,
            Some("application/json"),
            full(OK_QUERY_BODY),
        ),
        ("/ping" | "/write" | "/query", _) => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            Some("text/plain; charset=utf-8"),
            full("Method Not Allowed\n"),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            Some("text/plain; charset=utf-8"),
            full("404 page not found\n"),
        ),
    }
}

fn respond(status: StatusCode, content_type: Option<&'static str>, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("x-influxdb-version", HeaderValue::from_static(FAKE_VERSION));
    headers.insert("x-influxdb-build", HeaderValue::from_static("OSS"));
    if let Some(content_type) = content_type {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

fn empty() -> Body {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn full(text: &'static str) -> Body {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// [`OK_QUERY_BODY`], sent `delay` after the response head.
fn late(delay: Duration) -> Body {
    let frames = futures_util::stream::once(async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(OK_QUERY_BODY.as_bytes())))
    });
    StreamBody::new(frames).boxed()
}

/// A chunked body: one chunk of [`PARTIAL_QUERY_BODY`], a pause so that it is
/// flushed to the client, then an error, on which hyper drops the connection
/// without sending the terminating chunk.
fn reset_mid_body() -> Body {
    let frames = futures_util::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((
                Ok(Frame::data(Bytes::from_static(
                    PARTIAL_QUERY_BODY.as_bytes(),
                ))),
                1,
            )),
            1 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "FakeNode: ResetMidBody",
                    )),
                    2,
                ))
            }
            _ => None,
        }
    });
    StreamBody::new(frames).boxed()
}
