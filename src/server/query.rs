//! `/query`: reads go to one node with failover, admin statements to all.
//!
//! `q` is split and classified by [`influxql`]. Reads (and per-node
//! statements) are forwarded unchanged — same method, path, query string and
//! form body — to the least busy healthy read-enabled node; a connection
//! failure or 5xx before the first response byte moves on to the next node.
//! The node's answer streams back as it comes, chunked or not. Admin
//! statements go to every node (see [`super::broadcast`]). Reads mixed with
//! admin: 400. A query string too long for a URI (see [`super::head`]) is
//! forwarded as a form POST instead, which InfluxDB reads the same way.

use std::sync::Arc;

use http::header::HeaderMap;
use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::body::{self, Limits};
use super::error::ApiError;
use super::forward::{is_form, query_headers, read_one, relay, Forward};
use super::head::LongQuery;
use super::limits::identity::Claimed;
use super::{ResponseBody, Shared};
use crate::monitor::Endpoint;
use crate::payload::Payload;
use crate::protocol::influxql::{self, Statement, StatementKind};

/// Handles one `/query` request.
pub async fn handle(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    limits: Limits,
) -> Result<Response<ResponseBody>, ApiError> {
    let (mut parts, incoming) = request.into_parts();
    let (body, decoded_size) = match parts.method {
        Method::POST => body::read_sized(incoming, &parts.headers, limits).await?,
        _ => (Payload::default(), 0),
    };
    shared.monitor.http.received(Endpoint::Query, body.len());
    let long = parts.extensions.remove::<LongQuery>();
    let url_query = long.as_ref().map(|l| l.0.as_str()).or(parts.uri.query());
    let params = QueryParams::from_request(url_query, &parts.headers, &body);
    let q = params.q.as_deref().filter(|q| !q.trim().is_empty());
    let q = q.ok_or_else(|| ApiError::BadRequest("missing required parameter \"q\"".into()))?;
    let user = || claimed(url_query, &parts.headers);
    super::limits::charge_body(shared, &parts.extensions, user, &params.db, decoded_size)?;
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
            super::broadcast::broadcast(shared, forward, q, &statements, &params.db).await
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

/// The credentials of a query as InfluxDB reads them (`u` and `p` from the
/// URL, else `Authorization`), as a `[limits] user_bytes` key.
fn claimed(url_query: Option<&str>, headers: &HeaderMap) -> Option<Claimed> {
    let (mut u, mut p) = (None, None);
    for (key, value) in form_urlencoded::parse(url_query.unwrap_or("").as_bytes()) {
        match &*key {
            "u" => u = Some(value),
            "p" => p = Some(value),
            _ => {}
        }
    }
    Claimed::of(u.as_deref(), p.as_deref(), headers)
}

/// What the whole `q` is: `Admin` goes to every node, anything else to one.
fn classify(statements: &[Statement<'_>]) -> Result<StatementKind, ApiError> {
    influxql::summarize(statements).map_err(|mix| ApiError::BadRequest(mix.to_string()))
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
        several => super::spread::read_across(&table, several, &params.db, q, &forward).await,
    }
}
