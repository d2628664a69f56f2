//! Reads whose data spans clusters: one node per cluster answers, and the
//! answers are merged as one server holding all the data would answer
//! (see [`crate::protocol::merge`]).
//!
//! Every cluster gets the same statements, rewritten so that `LIMIT`/`OFFSET`
//! can be applied again after the merge, as one un-chunked JSON request. The
//! merged answer is one JSON document (also when the client asked for
//! `chunked=true`: a one-chunk stream).
//!
//! While a measurement is being moved (`[[move]]`), both clusters of the
//! move may send its series; only the one that answers for it now is kept
//! ([`RoutingTable::series_belongs`]), so nothing is counted twice.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, ACCEPT_ENCODING, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::error::ApiError;
use super::forward::{read_one, Forward};
use super::{full, ResponseBody};
use crate::payload::Payload;
use crate::protocol::merge::{merge, plans, rewrite_for_fanout, Answer, MergeKind};
use crate::protocol::{influxql, response};
use crate::routing::RoutingTable;

/// Largest answer one cluster may give to a read that is merged.
const MAX_PART: usize = 256 << 20;

/// Parameters the router sets itself on the requests it fans out.
const REPLACED: [&str; 3] = ["q", "chunked", "chunk_size"];

/// Asks one node in each of the `clusters` (indexes into `table`) and
/// merges the answers to `q` on database `db`.
pub(super) async fn read_across(
    table: &RoutingTable,
    clusters: &[usize],
    db: &str,
    q: &str,
    forward: &Forward,
) -> Result<Response<ResponseBody>, ApiError> {
    let fanned = Arc::new(fan_out_request(forward, q));
    let plans = plans(q);
    let mut parts = Vec::with_capacity(clusters.len());
    for &index in clusters {
        let cluster = &table.clusters()[index];
        let response = read_one(cluster, &fanned).await?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_PART)
            .collect()
            .await
            .map_err(|e| {
                ApiError::BadGateway(format!(
                    "answer from cluster {:?} unreadable: {e}",
                    cluster.name
                ))
            })?
            .to_bytes();
        if !status.is_success() {
            return Ok(plain(status, body));
        }
        let mut answer =
            Answer::parse(&cluster.name, &body).map_err(|e| ApiError::BadGateway(e.to_string()))?;
        if table.rules().has_moves() {
            for (position, result) in answer.results.iter_mut().enumerate() {
                let id = result.statement_id.unwrap_or(position as u64) as usize;
                if plans.get(id).map_or(true, |p| p.kind == MergeKind::Series) {
                    result
                        .series
                        .retain(|s| table.series_belongs(db, index, &s.name));
                }
            }
        }
        parts.push(answer);
    }
    if parts.is_empty() {
        return Err(ApiError::BadGateway("no answers to merge".into()));
    }
    Ok(plain(
        StatusCode::OK,
        Bytes::from(merge(parts, &plans).to_json()),
    ))
}

fn plain(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut response = response::empty(status).map(|_| full(Full::new(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The client's request as one form POST with rewritten statements and no chunking.
fn fan_out_request(forward: &Forward, q: &str) -> Forward {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (key, value) in client_params(forward) {
        if !REPLACED.contains(&key.as_str()) {
            form.append_pair(&key, &value);
        }
    }
    form.append_pair("q", &rewritten(q));
    let mut headers = forward.headers.clone();
    headers.remove(ACCEPT_ENCODING);
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    Forward {
        method: Method::POST,
        path_and_query: "/query".to_string(),
        headers,
        body: Payload::from(Bytes::from(form.finish())),
    }
}

/// Every parameter the client sent, in the URL and in a form body.
fn client_params(forward: &Forward) -> Vec<(String, String)> {
    let query = forward
        .path_and_query
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("");
    let mut params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let is_form = forward
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        params.extend(form_urlencoded::parse(&forward.body.to_contiguous()).into_owned());
    }
    params
}

/// `q` with each statement's `LIMIT`/`OFFSET` widened so the merge can apply them.
fn rewritten(q: &str) -> String {
    let statements: Vec<String> = influxql::parse(q)
        .iter()
        .map(|s| rewrite_for_fanout(s.text).unwrap_or_else(|| s.text.to_string()))
        .collect();
    // a statement may end in a `--` comment: a newline keeps it from swallowing the next
    statements.join(";\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn the_fanned_out_request_is_a_form_with_rewritten_statements_and_no_chunking() {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/x-msgpack"));
        let forward = Forward {
            method: Method::GET,
            path_and_query: "/query?db=d&q=ignored&chunked=true&chunk_size=10&epoch=ns".into(),
            headers,
            body: Payload::default(),
        };
        let fanned = fan_out_request(
            &forward,
            "SHOW MEASUREMENTS LIMIT 5 OFFSET 3; SELECT * FROM m",
        );
        assert_eq!(fanned.method, Method::POST);
        assert_eq!(fanned.headers[ACCEPT], "application/json");
        let body = String::from_utf8(fanned.body.to_contiguous().to_vec()).unwrap();
        assert_eq!(
            body,
            "db=d&epoch=ns&q=SHOW+MEASUREMENTS+LIMIT+8%3B%0ASELECT+*+FROM+m"
        );
    }
}
