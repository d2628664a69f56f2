//! One replay request: queued records become an HTTP request to the node
//! (a `/write` of joined bodies, a statement as a `/query` form, or a
//! Prometheus remote write as the snappy body it came as, with the
//! credentials kept in the record), and its answer becomes a [`Sent`]:
//! done, rejected for good, to retry, or unreadable.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use http::Method;
use http_body_util::BodyExt;

use crate::node::{Node, NodeError, RequestKind};
use crate::payload::Payload;
use crate::protocol::prom;
use crate::queue::{Record, RecordKind};

/// How long one replay request may take.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);

/// What became of one replay request.
#[derive(Debug)]
pub(super) enum Sent {
    Ok,
    /// The node rejected it (4xx): retrying cannot help.
    Rejected(String),
    /// Connection failure, timeout or 5xx: try again later.
    Retry(String),
    /// The node answered, but unreadably: tried again a few times, then
    /// dead-lettered.
    Unreadable(String),
}

/// Sends records that [`joinable`](super::joinable) put together (or one statement).
pub(super) async fn send(node: &Arc<Node>, records: &[&Record]) -> Sent {
    let Some(first) = records.first() else {
        return Sent::Ok;
    };
    let (path, payload, content_type) = match first.kind {
        RecordKind::Write => (
            write_path(first),
            join_bodies(records),
            "text/plain; charset=utf-8",
        ),
        RecordKind::Statement => (
            String::from("/query"),
            statement_form(first),
            "application/x-www-form-urlencoded",
        ),
        RecordKind::PromWrite => (
            prom_write_path(first),
            first.body.clone(),
            prom::CONTENT_TYPE,
        ),
    };
    let mut request = node
        .request(Method::POST, &path)
        .header(CONTENT_TYPE, content_type);
    if first.gzip {
        request = request.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if first.kind == RecordKind::PromWrite {
        request = request
            .header(CONTENT_ENCODING, HeaderValue::from_static("snappy"))
            .header(prom::WRITE_VERSION.0, prom::WRITE_VERSION.1);
    }
    if let Some(auth) = first.auth.as_ref().and_then(header_value) {
        request = request.header(AUTHORIZATION, auth);
    }
    let attempt = async {
        let response = node
            .send(RequestKind::Replay, request, payload, None)
            .await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Ok::<_, NodeError>((status, body))
    };
    match tokio::time::timeout(REPLAY_TIMEOUT, attempt).await {
        Err(_) => Sent::Retry(format!("replay timed out after {REPLAY_TIMEOUT:?}")),
        Ok(Err(error @ NodeError::Unreadable(_))) => Sent::Unreadable(error.to_string()),
        Ok(Err(error)) => Sent::Retry(error.to_string()),
        Ok(Ok((status, body))) => classify(status, &body),
    }
}

pub(super) fn classify(status: http::StatusCode, body: &Bytes) -> Sent {
    let text = || crate::protocol::response::truncate(String::from_utf8_lossy(body).trim(), 300);
    if status.is_success() {
        Sent::Ok
    } else if status.is_client_error() {
        Sent::Rejected(format!("answered {status}: {}", text()))
    } else {
        Sent::Retry(format!("answered {status}: {}", text()))
    }
}

/// The client's credentials as a header value, marked sensitive; `None`
/// when they cannot be one (then the node sees no credentials at all).
fn header_value(auth: &crate::config::Secret) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(auth.expose()).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `/api/v1/prom/write?db=…&rp=…` for a queued remote write.
pub(super) fn prom_write_path(record: &Record) -> String {
    let prefix = "/api/v1/prom/write?";
    let mut query = form_urlencoded::Serializer::for_suffix(String::from(prefix), prefix.len());
    query.append_pair("db", &record.db);
    if !record.rp.is_empty() {
        query.append_pair("rp", &record.rp);
    }
    query.finish()
}

pub(super) fn write_path(record: &Record) -> String {
    let mut query =
        form_urlencoded::Serializer::for_suffix(String::from("/write?"), "/write?".len());
    query.append_pair("db", &record.db);
    if !record.rp.is_empty() {
        query.append_pair("rp", &record.rp);
    }
    if !record.precision.is_empty() {
        query.append_pair("precision", &record.precision);
    }
    query.finish()
}

/// The bodies back to back, each ending in a newline so lines never merge.
pub(super) fn join_bodies(records: &[&Record]) -> Payload {
    if let [one] = records {
        return one.body.clone();
    }
    let mut chunks = Vec::new();
    for record in records {
        chunks.extend(record.body.chunks().iter().cloned());
        let ends_in_newline = record
            .body
            .chunks()
            .last()
            .is_some_and(|c| c.ends_with(b"\n"));
        if !ends_in_newline {
            chunks.push(Bytes::from_static(b"\n"));
        }
    }
    Payload::from_chunks(chunks)
}

pub(super) fn statement_form(record: &Record) -> Payload {
    let q = record.body.to_contiguous();
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("q", &String::from_utf8_lossy(&q));
    if !record.db.is_empty() {
        form.append_pair("db", &record.db);
    }
    Payload::from(Bytes::from(form.finish()))
}
