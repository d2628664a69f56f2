//! `/write` and `/api/v2/write`: replicate one body to every write-enabled node.
//!
//! For a database on one cluster the body is never parsed or copied: the
//! same chunks go to every node of that cluster, concurrently, or into its
//! durable queue (see [`super::fanout`]). Only when routing rules put a
//! database's measurements on several clusters is the body scanned and split
//! into per-cluster batches ([`crate::protocol::line::split_payload`]): the
//! body's chunks are scanned in place, without being joined; long runs of
//! lines for one cluster go out as slices of them and short runs (lines
//! whose clusters alternate) are copied once into a buffer per cluster. A
//! gzip body is decoded into one buffer first. A node's 4xx comes back to
//! the client as the node sent it (cut short when huge, see
//! [`super::fanout`]); after a split, with the number of the line it quotes
//! in the client's body ([`quoted`]).

use std::sync::Arc;

use http::header::{HeaderMap, CONTENT_ENCODING};
use http::{Request, Response};
use hyper::body::Incoming;

use super::body::{self, Limits};
use super::error::ApiError;
use super::fanout::{fan_out, WriteSend};
pub use super::forward::{client_credentials, forwarded_headers};
use super::{ResponseBody, Shared};
use crate::config::{Consistency, Secret};
use crate::monitor::Endpoint;
use crate::node::Node;
use crate::payload::Payload;
use crate::protocol::line;
use crate::routing::RoutingTable;

/// Which flavour of write endpoint the client called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// InfluxDB 1.x `/write`.
    V1,
    /// InfluxDB 2.x compatibility `/api/v2/write`.
    V2,
}

/// The parameters of a write, checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WriteParams {
    pub db: String,
    pub rp: Option<String>,
    pub precision: Option<&'static str>,
    pub consistency: Option<Consistency>,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

impl WriteParams {
    /// Parses the query string of a `/write` (V1) or `/api/v2/write` (V2) call.
    pub fn parse(query: Option<&str>, api: Api) -> Result<WriteParams, ApiError> {
        let mut params = WriteParams::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            params.take(api, &key, value.into_owned())?;
        }
        if params.db.is_empty() {
            let message = match api {
                Api::V1 => "database is required",
                Api::V2 => "bucket is required",
            };
            return Err(ApiError::BadRequest(message.into()));
        }
        Ok(params)
    }

    fn take(&mut self, api: Api, key: &str, value: String) -> Result<(), ApiError> {
        match (api, key) {
            (Api::V1, "db") => self.db = value,
            (Api::V1, "rp") => self.rp = Some(value).filter(|v| !v.is_empty()),
            (Api::V2, "bucket") => self.take_bucket(value),
            (_, "precision") => self.precision = normalize_precision(&value)?,
            (_, "consistency") => self.consistency = parse_consistency(&value)?,
            (_, "u") => self.user = Some(value),
            (_, "p") => self.password = Some(Secret::new(value)),
            _ => {}
        }
        Ok(())
    }

    fn take_bucket(&mut self, bucket: String) {
        match bucket.split_once('/') {
            Some((db, rp)) => {
                self.db = db.to_string();
                self.rp = Some(rp.to_string()).filter(|v| !v.is_empty());
            }
            None => self.db = bucket,
        }
    }

    /// The credentials the write carries, as a `[limits] user_bytes` key.
    fn claimed(&self, headers: &HeaderMap) -> Option<super::limits::identity::Claimed> {
        let password = self.password.as_ref().map(Secret::expose);
        super::limits::identity::Claimed::of(self.user.as_deref(), password, headers)
    }

    /// The 1.x `/write?…` path the nodes receive.
    pub fn node_path(&self) -> String {
        let mut query =
            form_urlencoded::Serializer::for_suffix(String::from("/write?"), "/write?".len());
        query.append_pair("db", &self.db);
        if let Some(rp) = &self.rp {
            query.append_pair("rp", rp);
        }
        if let Some(precision) = self.precision {
            query.append_pair("precision", precision);
        }
        if let Some(user) = &self.user {
            query.append_pair("u", user);
        }
        if let Some(password) = &self.password {
            query.append_pair("p", password.expose());
        }
        query.finish()
    }
}

/// A client's `consistency`, in any case as InfluxDB takes it; empty means
/// the configured default.
pub(super) fn parse_consistency(value: &str) -> Result<Option<Consistency>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    match value.to_ascii_lowercase().parse() {
        Ok(level) => Ok(Some(level)),
        Err(_) => Err(ApiError::BadRequest(format!(
            "invalid consistency {value:?}: use any, one, quorum or all"
        ))),
    }
}

/// Maps every accepted spelling to the one InfluxDB 1.x understands
/// (1.x reads `us` as nanoseconds, so it becomes `u`).
fn normalize_precision(value: &str) -> Result<Option<&'static str>, ApiError> {
    Ok(Some(match value {
        "" => return Ok(None),
        "n" | "ns" => "n",
        "u" | "us" | "µ" => "u",
        "ms" => "ms",
        "s" => "s",
        "m" => "m",
        "h" => "h",
        other => {
            return Err(ApiError::BadRequest(format!(
                "invalid precision {other:?}: use n, ns, u, us, ms, s, m or h"
            )))
        }
    }))
}

/// Handles one write request end to end.
pub async fn handle(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    api: Api,
    limits: Limits,
) -> Result<Response<ResponseBody>, ApiError> {
    let params = WriteParams::parse(
        super::head::query_of(request.uri(), request.extensions()),
        api,
    )?;
    let consistency = params
        .consistency
        .unwrap_or(shared.config.write.consistency);
    let (parts, incoming) = request.into_parts();
    let body = body::read_write(incoming, &parts.headers, limits).await?;
    count_received(shared, api, &body);
    let user = || params.claimed(&parts.headers);
    super::limits::charge_body(
        shared,
        &parts.extensions,
        user,
        &params.db,
        body.decoded_size,
    )?;
    write_payload(shared, &params, &parts.headers, body.payload, consistency).await
}

/// Counts a write body's bytes, and its lines when it is not gzip.
fn count_received(shared: &Shared, api: Api, body: &body::WriteBody) {
    let endpoint = match api {
        Api::V1 => Endpoint::Write,
        Api::V2 => Endpoint::WriteV2,
    };
    let http = &shared.monitor.http;
    http.received(endpoint, body.payload.len());
    if let Some(lines) = body.lines {
        http.write_lines_counted(lines);
    }
}

/// Routes and delivers a body of line protocol that is already read: the
/// path every write takes, from HTTP clients, UDP datagrams and the router's
/// own statistics alike. `headers` are the client's (only `Content-Encoding`,
/// `Content-Type` and `Authorization` matter).
pub async fn write_payload(
    shared: &Arc<Shared>,
    params: &WriteParams,
    headers: &HeaderMap,
    payload: Payload,
    consistency: Consistency,
) -> Result<Response<ResponseBody>, ApiError> {
    let table = shared.routing.load();
    let max_size = shared.config.server.max_body_size;
    let (deliveries, split_body) = deliveries(&table, params, headers, payload, max_size).await?;
    let answer = deliver_all(shared, deliveries, consistency).await;
    match split_body {
        Some(body) => quoted::name_line(answer, &body).await,
        None => answer,
    }
}

/// One write for one cluster: its nodes and what to send them.
pub(super) type Delivery = (Vec<Arc<Node>>, Arc<WriteSend>);

/// The body as it came for a database on one cluster; split by measurement
/// (and decoded, when gzip) when routing rules put its lines on several,
/// and then also the body that was split.
async fn deliveries(
    table: &RoutingTable,
    params: &WriteParams,
    client_headers: &HeaderMap,
    payload: Payload,
    max_size: u64,
) -> Result<(Vec<Delivery>, Option<Payload>), ApiError> {
    let gzip = body::is_gzip(client_headers);
    let split_up = table.needs_measurement(&params.db);
    let (batches, split_body) = if split_up {
        let (body, batches) = split(table, &params.db, &payload, gzip, max_size).await?;
        (batches, Some(body))
    } else {
        (
            vec![(table.cluster_index_for_db(&params.db), payload)],
            None,
        )
    };
    let mut headers = forwarded_headers(client_headers);
    let credentials = client_credentials(
        params.user.as_deref(),
        params.password.as_ref().map(Secret::expose),
        &headers,
    );
    if split_up {
        headers.remove(CONTENT_ENCODING); // split batches are sent decoded
    }
    let mut deliveries = Vec::with_capacity(batches.len());
    for (index, batch) in batches {
        let cluster = &table.clusters()[index];
        let targets: Vec<Arc<Node>> = cluster.write_nodes().cloned().collect();
        if targets.is_empty() {
            let message = format!("cluster {:?} has no write-enabled node", cluster.name);
            return Err(ApiError::Unavailable(message));
        }
        let mut record = WriteSend::record(
            &params.db,
            params.rp.as_deref(),
            params.precision,
            gzip && !split_up,
            batch,
        );
        record.auth = credentials.clone();
        let uri = http::Uri::try_from(params.node_path())
            .map_err(|e| ApiError::BadRequest(format!("invalid write parameters: {e}")))?;
        let send = WriteSend {
            uri,
            headers: headers.clone(),
            record,
        };
        deliveries.push((targets, Arc::new(send)));
    }
    Ok((deliveries, split_body))
}

/// Runs the deliveries (concurrently when there are several) and answers for all.
pub(super) async fn deliver_all(
    shared: &Arc<Shared>,
    mut deliveries: Vec<Delivery>,
    consistency: Consistency,
) -> Result<Response<ResponseBody>, ApiError> {
    if deliveries.len() == 1 {
        let (targets, send) = deliveries.remove(0);
        return fan_out(shared, targets, send, consistency).await;
    }
    let mut running = tokio::task::JoinSet::new();
    for (targets, send) in deliveries {
        let shared = shared.clone();
        running.spawn(async move { fan_out(&shared, targets, send, consistency).await });
    }
    combine(running.join_all().await)
}

/// One answer for a write that went to several clusters: 204 only when every
/// cluster's consistency level was met, else the first cluster's error.
fn combine(
    answers: Vec<Result<Response<ResponseBody>, ApiError>>,
) -> Result<Response<ResponseBody>, ApiError> {
    let mut first_ok = None;
    for answer in answers {
        match answer {
            Ok(response) if response.status() == http::StatusCode::NO_CONTENT => {
                first_ok.get_or_insert(response);
            }
            other => return other,
        }
    }
    first_ok.ok_or_else(|| ApiError::BadRequest("write has no lines".into()))
}

/// Splits a body into one batch per target cluster by each line's
/// measurement (decoded first when it is gzip, into one buffer, which is
/// returned with the batches); a body
/// without lines (empty, blank lines, comments) goes whole to the
/// database's cluster, as it would without measurement rules. The chunks
/// of a plain body are scanned where they are, never joined: long runs of
/// lines for one cluster are sent as slices of them, short runs copied once
/// into per-cluster buffers ([`line::split_payload`]).
async fn split(
    table: &RoutingTable,
    db: &str,
    payload: &Payload,
    gzip: bool,
    max_size: u64,
) -> Result<(Payload, Vec<(usize, Payload)>), ApiError> {
    let rules = table.rules_for_db(db);
    let cluster_of = |measurement: &[u8]| rules.write_to(&String::from_utf8_lossy(measurement));
    let body = match gzip {
        true => Payload::from(body::inflate(payload, max_size).await?),
        false => payload.clone(),
    };
    let batches = line::split_payload(&body, cluster_of)
        .map_err(|e| ApiError::BadRequest(format!("unable to parse: {e}")))?;
    if batches.is_empty() {
        // no lines at all: InfluxDB answers 204 (or 404 for a database it
        // does not have, 401 for bad credentials); the database's own
        // cluster gets the body to say which
        return Ok((body.clone(), vec![(table.cluster_index_for_db(db), body)]));
    }
    Ok((body, crate::routing::per_cluster(batches)))
}

mod quoted;
#[cfg(test)]
mod tests;
