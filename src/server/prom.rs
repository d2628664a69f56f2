//! `/api/v1/prom/write` and `/api/v1/prom/read`: Prometheus remote storage,
//! served as InfluxDB 1.x serves it, by the nodes' own endpoints.
//!
//! **Write.** The body (a snappy block holding a protobuf `WriteRequest`;
//! `Content-Encoding` is ignored, as InfluxDB ignores it) is read within
//! `max_body_size`, decompressed within the same limit (413 past it) and
//! checked ([`prom::write::scan`]): a body that is not snappy or not a
//! `WriteRequest` gets 400, and so does one InfluxDB would refuse whole
//! (±Inf, a time out of range, a series key too long), with InfluxDB's
//! message. For a database on one cluster the client's body then goes
//! unchanged to every write-enabled node's own `/api/v1/prom/write`, or
//! into its queue as a [`RecordKind::PromWrite`] record, replicated and
//! answered exactly like a `/write` ([`super::fanout`]): the nodes convert
//! it themselves, so they store what InfluxDB stores. When routing rules put
//! the database's measurements on several clusters, the request is cut into
//! one `WriteRequest` per cluster made of the client's own series bytes
//! ([`prom::write::split`]), each compressed again; a request whose series
//! all belong to one cluster goes there unchanged.
//!
//! `[limits]` count a remote write's or read's decompressed size (what its
//! block declares) as they count a gzip body inflated, and a remote read
//! takes a place among its client's concurrent queries.
//!
//! **Read.** The `ReadRequest` goes unchanged, as a POST with the client's
//! query string and credentials, to one healthy read-enabled node of the
//! database's cluster, failing over before the first byte like a `/query`
//! read, and the answer streams back. Where measurement rules spread the
//! database, the request is decoded: a query whose `__name__` is pinned by
//! an equality matcher concerns that measurement's cluster, any other query
//! every cluster of the database; when that is several clusters, one node
//! of each answers and the `ReadResponse`s are merged
//! ([`prom::read::merge_compressed`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::body::{self, Limits};
use super::error::ApiError;
use super::fanout::WriteSend;
use super::forward::{client_credentials, forwarded_headers, read_one, relay, Forward};
use super::limits::identity::Claimed;
use super::write::{deliver_all, parse_consistency, Delivery};
use super::{full, ResponseBody, Shared};
use crate::config::{Consistency, Secret};
use crate::monitor::Endpoint;
use crate::payload::Payload;
use crate::protocol::prom::{self, snappy::SnappyError, write::WriteError};
use crate::queue::RecordKind;
use crate::routing::{Cluster, RoutingTable};

/// Bodies that decompress to more than this are checked on the blocking pool.
const CHECK_INLINE_MAX: u64 = 1 << 20;

/// Largest answer one cluster may give to a read that is merged.
const MAX_PART: usize = 256 << 20;

/// The parameters of a remote write.
#[derive(Debug, Default)]
struct WriteParams {
    db: String,
    rp: Option<String>,
    user: Option<String>,
    password: Option<Secret>,
    consistency: Option<Consistency>,
}

impl WriteParams {
    /// `db` (required), `rp`, `u`, `p` and `consistency`; InfluxDB reads
    /// nothing else (not `precision`: timestamps are milliseconds).
    fn parse(query: Option<&str>) -> Result<WriteParams, ApiError> {
        let mut params = WriteParams::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "db" => params.db = value.into_owned(),
                "rp" => params.rp = Some(value.into_owned()).filter(|v| !v.is_empty()),
                "u" => params.user = Some(value.into_owned()),
                "p" => params.password = Some(Secret::new(value.into_owned())),
                "consistency" => params.consistency = parse_consistency(&value)?,
                _ => {}
            }
        }
        if params.db.is_empty() {
            return Err(ApiError::BadRequest("database is required".into()));
        }
        Ok(params)
    }

    /// The `/api/v1/prom/write?…` path the nodes receive.
    fn node_path(&self) -> String {
        let prefix = "/api/v1/prom/write?";
        let mut query = form_urlencoded::Serializer::for_suffix(String::from(prefix), prefix.len());
        query.append_pair("db", &self.db);
        if let Some(rp) = &self.rp {
            query.append_pair("rp", rp);
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

/// Handles one remote write end to end.
pub async fn write(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    limits: Limits,
) -> Result<Response<ResponseBody>, ApiError> {
    let params = WriteParams::parse(super::head::query_of(request.uri(), request.extensions()))?;
    let consistency = params
        .consistency
        .unwrap_or(shared.config.write.consistency);
    let (parts, incoming) = request.into_parts();
    let body = body::read(incoming, &length_only(&parts.headers), limits).await?;
    shared
        .monitor
        .http
        .received(Endpoint::PromWrite, body.len());
    let max_size = shared.config.server.max_body_size;
    let compressed = body.to_contiguous();
    let decoded_size = decoded_size(&compressed, max_size)?;
    let password = params.password.as_ref().map(Secret::expose);
    let user = || Claimed::of(params.user.as_deref(), password, &parts.headers);
    super::limits::charge_body(shared, &parts.extensions, user, &params.db, decoded_size)?;
    let table = shared.routing.load();
    let batches =
        check_and_split(&table, &params.db, body, compressed, decoded_size, max_size).await?;
    let headers = node_headers(&parts.headers);
    let credentials = client_credentials(
        params.user.as_deref(),
        params.password.as_ref().map(Secret::expose),
        &headers,
    );
    let uri = http::Uri::try_from(params.node_path())
        .map_err(|e| ApiError::BadRequest(format!("invalid write parameters: {e}")))?;
    let mut deliveries: Vec<Delivery> = Vec::with_capacity(batches.len());
    for (index, batch) in batches {
        let cluster = &table.clusters()[index];
        let targets: Vec<_> = cluster.write_nodes().cloned().collect();
        if targets.is_empty() {
            let message = format!("cluster {:?} has no write-enabled node", cluster.name);
            return Err(ApiError::Unavailable(message));
        }
        let mut record = WriteSend::record(&params.db, params.rp.as_deref(), None, false, batch);
        record.kind = RecordKind::PromWrite;
        record.auth = credentials.clone();
        let send = WriteSend {
            uri: uri.clone(),
            headers: headers.clone(),
            record,
        };
        deliveries.push((targets, Arc::new(send)));
    }
    deliver_all(shared, deliveries, consistency).await
}

/// Decompresses and checks a remote write, and says which cluster gets
/// what: the body as it came when the database is on one cluster (or all
/// its series are), else one compressed part per cluster. A request
/// without series goes whole to the database's cluster, whose nodes answer
/// for it as InfluxDB would.
async fn check_and_split(
    table: &Arc<RoutingTable>,
    db: &str,
    body: Payload,
    compressed: Bytes,
    declared: u64,
    max_size: u64,
) -> Result<Vec<(usize, Payload)>, ApiError> {
    if declared <= CHECK_INLINE_MAX {
        return check_and_split_now(table, db, body, &compressed, max_size);
    }
    let (table, db) = (table.clone(), db.to_string());
    tokio::task::spawn_blocking(move || {
        check_and_split_now(&table, &db, body, &compressed, max_size)
    })
    .await
    .map_err(|e| ApiError::BadRequest(format!("checking the remote write failed: {e}")))?
}

fn check_and_split_now(
    table: &RoutingTable,
    db: &str,
    body: Payload,
    compressed: &[u8],
    max_size: u64,
) -> Result<Vec<(usize, Payload)>, ApiError> {
    let decoded = prom::snappy::decompress(compressed, max_size).map_err(snappy_error)?;
    let home = table.cluster_index_for_db(db);
    if !table.needs_measurement(db) {
        prom::write::scan(&decoded, |_, _| {}).map_err(write_error)?;
        return Ok(vec![(home, body)]);
    }
    let rules = table.rules_for_db(db);
    let cluster_of = |name: &[u8]| rules.write_to(&measurement_of(name));
    let mut batches = prom::write::split(&decoded, cluster_of).map_err(write_error)?;
    Ok(match batches.len() {
        0 => vec![(home, body)],
        1 => crate::routing::per_cluster(vec![(batches.remove(0).0, body)]),
        _ => crate::routing::per_cluster(
            batches
                .into_iter()
                .map(|(to, part)| {
                    let part = Bytes::from(prom::snappy::compress(&part));
                    (to, Payload::from(part))
                })
                .collect(),
        ),
    })
}

/// The measurement a metric name is routed as: the name InfluxDB shows
/// for it, unescaped as a `/write` line's measurement is (the same for
/// every name Prometheus itself allows).
fn measurement_of(name: &[u8]) -> String {
    String::from_utf8_lossy(&crate::protocol::line::unescape_measurement(name)).into_owned()
}

/// The size a snappy body declares it decompresses to, within `max_size`
/// (413 past it): what `[limits]` counts, as it counts a gzip body inflated.
fn decoded_size(compressed: &[u8], max_size: u64) -> Result<u64, ApiError> {
    let size = prom::snappy::declared_len(compressed).map_err(snappy_error)?;
    if size > max_size {
        return Err(ApiError::DecodedTooLarge {
            size,
            limit: max_size,
        });
    }
    Ok(size)
}

fn snappy_error(e: SnappyError) -> ApiError {
    match e {
        SnappyError::TooLarge { declared, limit } => ApiError::DecodedTooLarge {
            size: declared,
            limit,
        },
        corrupt => ApiError::BadRequest(corrupt.to_string()),
    }
}

fn write_error(e: WriteError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// Only the declared length of the client's body: it is read as it is,
/// whatever `Content-Encoding` says (InfluxDB does the same).
fn length_only(client: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(length) = client.get(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, length.clone());
    }
    headers
}

/// The headers nodes get with a remote write or read: the client's
/// credentials (`Token` as Basic) and the protocol's own headers.
fn node_headers(client: &HeaderMap) -> HeaderMap {
    let mut headers = forwarded_headers(client);
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(prom::CONTENT_TYPE));
    headers.insert(
        HeaderName::from_static(prom::WRITE_VERSION.0),
        HeaderValue::from_static(prom::WRITE_VERSION.1),
    );
    headers
}

/// Handles one remote read.
pub async fn read(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    limits: Limits,
) -> Result<Response<ResponseBody>, ApiError> {
    let query = super::head::query_of(request.uri(), request.extensions()).map(str::to_string);
    let db = form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .filter(|(key, _)| key == "db")
        .last()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let (parts, incoming) = request.into_parts();
    let body = body::read(incoming, &length_only(&parts.headers), limits).await?;
    shared.monitor.http.received(Endpoint::PromRead, body.len());
    if !body.is_empty() {
        let max_size = shared.config.server.max_body_size;
        let decoded_size = decoded_size(&body.to_contiguous(), max_size)?;
        let user = || read_user(query.as_deref(), &parts.headers);
        super::limits::charge_body(shared, &parts.extensions, user, &db, decoded_size)?;
    }
    let mut headers = node_headers(&parts.headers);
    headers.remove(prom::WRITE_VERSION.0);
    for name in ["x-prometheus-remote-read-version", "accept-encoding"] {
        if let Some(value) = parts.headers.get(name) {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    let table = shared.routing.load();
    let clusters = match table.needs_measurement(&db) {
        true => read_clusters(&table, &db, &body, shared.config.server.max_body_size)?,
        false => Vec::new(),
    };
    let forward = Forward {
        method: Method::POST,
        path_and_query: match &query {
            Some(query) => format!("/api/v1/prom/read?{query}"),
            None => String::from("/api/v1/prom/read"),
        },
        headers,
        body,
    };
    match clusters.as_slice() {
        [] => Ok(relay(read_one(table.cluster_for(&db), &forward).await?)),
        [one] => Ok(relay(read_one(&table.clusters()[*one], &forward).await?)),
        several => {
            let clusters: Vec<&Cluster> = several.iter().map(|i| &table.clusters()[*i]).collect();
            read_across(&clusters, &forward).await
        }
    }
}

/// The credentials of a remote read (`u` and `p` in the URL, else the
/// `Authorization` header), as a `[limits] user_bytes` key.
fn read_user(query: Option<&str>, headers: &HeaderMap) -> Option<Claimed> {
    let (mut u, mut p) = (None, None);
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "u" => u = Some(value),
            "p" => p = Some(value),
            _ => {}
        }
    }
    Claimed::of(u.as_deref(), p.as_deref(), headers)
}

/// The clusters that hold the data a `ReadRequest` asks for, over a
/// database whose measurements are spread by routing rules.
fn read_clusters(
    table: &RoutingTable,
    db: &str,
    body: &Payload,
    max_size: u64,
) -> Result<Vec<usize>, ApiError> {
    let decoded =
        prom::snappy::decompress(&body.to_contiguous(), max_size).map_err(snappy_error)?;
    let rules = table.rules_for_db(db);
    let everywhere = table.clusters_for_db(db);
    let mut clusters = BTreeSet::new();
    prom::read::for_each_query(&decoded, |name| match name {
        Some(name) => {
            clusters.insert(rules.read_cluster_for(&measurement_of(name)));
        }
        None => clusters.extend(everywhere.iter().copied()),
    })
    .map_err(|e| {
        ApiError::BadRequest(format!(
            "the body is not a valid Prometheus ReadRequest: {e}"
        ))
    })?;
    Ok(clusters.into_iter().collect())
}

/// Asks one node of each cluster (concurrently) and merges the answers;
/// the first cluster's error answer, if any, is the answer.
async fn read_across(
    clusters: &[&Cluster],
    forward: &Forward,
) -> Result<Response<ResponseBody>, ApiError> {
    let asks = clusters.iter().map(|cluster| async move {
        let response = read_one(cluster, forward).await?;
        let (parts, body) = response.into_parts();
        let body = http_body_util::Limited::new(body, MAX_PART)
            .collect()
            .await
            .map_err(|e| {
                ApiError::BadGateway(format!(
                    "answer from cluster {:?} unreadable: {e}",
                    cluster.name
                ))
            })?
            .to_bytes();
        Ok::<_, ApiError>((parts, body))
    });
    let mut bodies = Vec::with_capacity(clusters.len());
    for answer in futures_util::future::join_all(asks).await {
        let (parts, body) = answer?;
        if !parts.status.is_success() {
            let mut response = Response::from_parts(parts, full(Full::new(body)));
            for name in super::forward::HOP_BY_HOP {
                response.headers_mut().remove(name);
            }
            response.headers_mut().remove(CONTENT_LENGTH);
            return Ok(response);
        }
        bodies.push(body);
    }
    let merged = prom::read::merge_compressed(&bodies, MAX_PART as u64)
        .map_err(|e| ApiError::BadGateway(format!("cannot merge the clusters' answers: {e}")))?;
    let mut response = Response::new(full(Full::new(Bytes::from(merged))));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(prom::CONTENT_TYPE));
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_parameters_are_those_influxdb_reads() {
        let params = WriteParams::parse(Some(
            "db=my%20db&rp=week&u=bob&p=s%26cret&precision=s&consistency=one",
        ))
        .unwrap();
        assert_eq!(params.consistency, Some(Consistency::One));
        assert_eq!(
            params.node_path(),
            "/api/v1/prom/write?db=my+db&rp=week&u=bob&p=s%26cret"
        );
        let e = WriteParams::parse(Some("rp=x")).unwrap_err();
        assert_eq!(e.to_string(), "database is required");
        assert!(WriteParams::parse(Some("db=d&consistency=most")).is_err());
    }

    #[test]
    fn nodes_get_the_protocol_headers_and_the_clients_credentials_only() {
        let mut client = HeaderMap::new();
        client.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        client.insert("authorization", HeaderValue::from_static("Token bob:pw"));
        client.insert("cookie", HeaderValue::from_static("x=1"));
        let headers = node_headers(&client);
        assert_eq!(headers[CONTENT_ENCODING], "snappy");
        assert_eq!(headers[CONTENT_TYPE], "application/x-protobuf");
        assert_eq!(headers["authorization"], "Basic Ym9iOnB3");
        assert!(!headers.contains_key("cookie"));
    }
}
