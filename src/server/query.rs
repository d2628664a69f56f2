//! `/query`: reads go to one node with failover, admin statements to all.
//!
//! `q` is split and classified by [`influxql`]. Reads (and per-node
//! statements) are forwarded unchanged — same method, path, query string and
//! form body — to the least busy healthy read-enabled node; a connection
//! failure or 5xx before the first response byte moves on to the next node.
//! The node's answer streams back as it comes, chunked or not. Admin
//! statements go to every node (see [`super::admin`]). Reads mixed with
//! admin: 400. A query string too long for a URI (see [`super::head`]) is
//! forwarded as a form POST instead, which InfluxDB reads the same way.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, ACCEPT, ACCEPT_ENCODING, CONTENT_TYPE};
use http::{Method, Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;

use super::body::{self, Limits};
use super::error::ApiError;
use super::head::LongQuery;
use super::write::forwarded_headers;
use super::{ResponseBody, Shared};
use crate::monitor::Endpoint;
use crate::node::{Node, NodeError, NodeResponseBody, RequestKind};
use crate::payload::Payload;
use crate::protocol::influxql::{self, Statement, StatementKind};
use crate::routing::Cluster;

/// Response headers that belong to one hop and are not relayed.
pub(super) const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// A query as received, ready to forward to nodes unchanged.
#[derive(Debug)]
pub(super) struct Forward {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Payload,
}

impl Forward {
    /// A query whose URL parameters (`url_query`) are too long for a URI,
    /// as a form POST: those parameters after the client's own form body,
    /// whose values InfluxDB takes first, as it would from the URL.
    fn as_form(url_query: &str, client: &HeaderMap, body: Payload) -> Forward {
        let mut form = Vec::with_capacity(body.len() as usize + 1 + url_query.len());
        if is_form(client) && !body.is_empty() {
            form.extend_from_slice(&body.to_contiguous());
            form.push(b'&');
        }
        form.extend_from_slice(url_query.as_bytes());
        let mut headers = query_headers(client);
        headers.remove(http::header::CONTENT_ENCODING);
        headers.insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        Forward {
            method: Method::POST,
            path_and_query: String::from("/query"),
            headers,
            body: Payload::from(bytes::Bytes::from(form)),
        }
    }
}

/// Handles one `/query` request.
pub async fn handle(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    limits: Limits,
) -> Result<Response<ResponseBody>, ApiError> {
    let (mut parts, incoming) = request.into_parts();
    let body = match parts.method {
        Method::POST => body::read(incoming, &parts.headers, limits).await?,
        _ => Payload::default(),
    };
    shared.monitor.http.received(Endpoint::Query, body.len());
    let long = parts.extensions.remove::<LongQuery>();
    let url_query = long.as_ref().map(|l| l.0.as_str()).or(parts.uri.query());
    let params = QueryParams::from_request(url_query, &parts.headers, &body);
    let q = params.q.as_deref().filter(|q| !q.trim().is_empty());
    let q = q.ok_or_else(|| ApiError::BadRequest("missing required parameter \"q\"".into()))?;
    let statements = influxql::parse(q);
    let class = classify(&statements)?;
    let forward = match long {
        Some(long) => Forward::as_form(&long.0, &parts.headers, body),
        None => Forward {
            method: parts.method,
            path_and_query: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/query")
                .to_string(),
            headers: query_headers(&parts.headers),
            body,
        },
    };
    match class {
        StatementKind::Admin => {
            super::admin::broadcast(shared, forward, q, &statements, &params.db).await
        }
        _ => read(shared, &params, q, &statements, forward).await,
    }
}

/// The parameters the router itself looks at; the rest pass through untouched.
#[derive(Debug, Default)]
struct QueryParams {
    q: Option<String>,
    db: String,
}

impl QueryParams {
    /// URL parameters first, then a urlencoded form body (which wins, as in InfluxDB).
    fn from_request(query: Option<&str>, headers: &HeaderMap, body: &Payload) -> QueryParams {
        let mut params = QueryParams::default();
        params.take_all(query.unwrap_or("").as_bytes());
        if is_form(headers) && !body.is_empty() {
            params.take_all(&body.to_contiguous());
        }
        params
    }

    fn take_all(&mut self, encoded: &[u8]) {
        for (key, value) in form_urlencoded::parse(encoded) {
            match &*key {
                "q" => self.q = Some(value.into_owned()),
                "db" => self.db = value.into_owned(),
                _ => {}
            }
        }
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// What the whole `q` is: `Admin` goes to every node, anything else to one.
fn classify(statements: &[Statement<'_>]) -> Result<StatementKind, ApiError> {
    influxql::summarize(statements).map_err(|mix| ApiError::BadRequest(mix.to_string()))
}

fn query_headers(client: &HeaderMap) -> HeaderMap {
    let mut headers = forwarded_headers(client);
    for name in [ACCEPT, ACCEPT_ENCODING] {
        if let Some(value) = client.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    headers
}

pub(super) async fn send(
    node: &Arc<Node>,
    forward: &Forward,
    timeout: Option<Duration>,
) -> Result<Response<NodeResponseBody>, NodeError> {
    send_as(RequestKind::Query, node, forward, timeout).await
}

/// [`send`], counted in the node's metrics as `kind`.
pub(super) async fn send_as(
    kind: RequestKind,
    node: &Arc<Node>,
    forward: &Forward,
    timeout: Option<Duration>,
) -> Result<Response<NodeResponseBody>, NodeError> {
    let mut request = node.request(forward.method.clone(), forward.path_and_query.as_str());
    if let Some(headers) = request.headers_mut() {
        for (name, value) in &forward.headers {
            headers.append(name.clone(), value.clone());
        }
    }
    node.send(kind, request, forward.body.clone(), timeout)
        .await
}

/// Sends a read to one node, failing over on connection errors and 5xx.
async fn read(
    shared: &Arc<Shared>,
    params: &QueryParams,
    q: &str,
    statements: &[Statement<'_>],
    forward: Forward,
) -> Result<Response<ResponseBody>, ApiError> {
    let table = shared.routing.load();
    let clusters = super::targets::read_clusters(&table, &params.db, statements);
    match clusters.as_slice() {
        [] => Ok(relay(
            read_one(table.cluster_for(&params.db), &forward).await?,
        )),
        [one] => Ok(relay(read_one(&table.clusters()[*one], &forward).await?)),
        several => {
            let clusters: Vec<&Cluster> = several.iter().map(|i| &table.clusters()[*i]).collect();
            super::spread::read_across(&clusters, q, &forward).await
        }
    }
}

/// Asks one node of `cluster`, failing over on connection errors and 5xx.
pub(super) async fn read_one(
    cluster: &Cluster,
    forward: &Forward,
) -> Result<Response<NodeResponseBody>, ApiError> {
    let candidates = cluster.read_candidates();
    if candidates.is_empty() {
        return Err(ApiError::Unavailable(format!(
            "cluster {:?} has no read-enabled node",
            cluster.name
        )));
    }
    let mut failures = Vec::new();
    let mut all_timeouts = true;
    for node in candidates {
        match send(&node, forward, None).await {
            Ok(response) if response.status().is_server_error() => {
                all_timeouts = false;
                failures.push(format!("{}: answered {}", node.name(), response.status()));
            }
            Ok(response) => return Ok(response),
            Err(e) => {
                all_timeouts &= e.is_timeout();
                node.note_error(&e.to_string());
                failures.push(format!("{}: {e}", node.name()));
            }
        }
    }
    let message = format!("no node could answer the query: {}", failures.join("; "));
    Err(if all_timeouts {
        ApiError::GatewayTimeout(message)
    } else {
        ApiError::BadGateway(message)
    })
}

/// Streams a node's answer back, without hop-by-hop headers.
pub(super) fn relay(response: Response<NodeResponseBody>) -> Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    Response::from_parts(parts, Either::Right(body))
}
