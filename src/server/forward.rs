//! Forwarding a query to nodes unchanged, and relaying a node's answer:
//! what the read path ([`super::query`]), the cross-cluster reads
//! ([`super::spread`]), the admin broadcast ([`super::broadcast`]) and the
//! writes share: which client headers nodes get, and the client's
//! credentials as a queued copy keeps them.

use std::sync::Arc;
use std::time::Duration;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING,
    CONTENT_TYPE,
};
use http::{Method, Response};
use http_body_util::Either;

use super::error::ApiError;
use super::ResponseBody;
use crate::config::Secret;
use crate::node::{Node, NodeError, NodeResponseBody, RequestKind};
use crate::payload::Payload;
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
    pub(super) fn as_form(url_query: &str, client: &HeaderMap, body: Payload) -> Forward {
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

pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

pub(super) fn query_headers(client: &HeaderMap) -> HeaderMap {
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

/// Asks one node of `cluster`, failing over on connection errors and 5xx:
/// the cluster's `read_url` first when it has one (and it has not just
/// failed), then its read-enabled nodes.
pub(super) async fn read_one(
    cluster: &Cluster,
    forward: &Forward,
) -> Result<Response<NodeResponseBody>, ApiError> {
    let mut failures = Vec::new();
    if let Some(via) = cluster.read_via.as_ref().filter(|via| via.usable()) {
        match send(&via.node, forward, None).await {
            Ok(response) if !response.status().is_server_error() => return Ok(response),
            Ok(response) => {
                let failure = format!("read_url answered {}", response.status());
                via.failed(&failure);
                failures.push(failure);
            }
            Err(e) => {
                tracing::warn!(cluster = %cluster.name, url = %via.node.base_url(), error = %e, "read_url failed; the router picks a node itself for a while");
                via.failed(&e.to_string());
                failures.push(format!("read_url: {e}"));
            }
        }
    }
    let candidates = cluster.read_candidates();
    if candidates.is_empty() {
        return Err(ApiError::Unavailable(format!(
            "cluster {:?} has no read-enabled node",
            cluster.name
        )));
    }
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

/// Headers a node needs to read the body and check the client's credentials.
const FORWARDED: [HeaderName; 2] = [CONTENT_ENCODING, CONTENT_TYPE];

/// Copies what nodes need of the client's headers, turning `Token user:pass` into Basic.
pub fn forwarded_headers(client: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in FORWARDED {
        if let Some(value) = client.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    if let Some(auth) = client.get(AUTHORIZATION) {
        headers.insert(
            AUTHORIZATION,
            token_as_basic(auth).unwrap_or_else(|| auth.clone()),
        );
    }
    headers
}

/// The client's credentials as the one `Authorization` value a queued copy
/// is replayed with: `u` and `p` when both are given (InfluxDB reads them
/// first), else the forwarded `Authorization` header; `None` without either.
pub fn client_credentials(
    user: Option<&str>,
    password: Option<&str>,
    forwarded: &HeaderMap,
) -> Option<Secret> {
    match (user, password) {
        (Some(user), Some(password)) if !user.is_empty() && !password.is_empty() => {
            let token = crate::node::base64(format!("{user}:{password}").as_bytes());
            Some(Secret::new(format!("Basic {token}")))
        }
        _ => {
            let header = forwarded.get(AUTHORIZATION)?;
            let text = String::from_utf8_lossy(header.as_bytes()).into_owned();
            Some(Secret::new(text))
        }
    }
}

/// InfluxDB 1.8 accepts `Authorization: Token user:password`; older nodes only
/// Basic, which says the same thing.
fn token_as_basic(value: &HeaderValue) -> Option<HeaderValue> {
    let token = value.to_str().ok()?.strip_prefix("Token ")?;
    if !token.contains(':') {
        return None;
    }
    let mut basic =
        HeaderValue::from_str(&format!("Basic {}", crate::node::base64(token.as_bytes()))).ok()?;
    basic.set_sensitive(true);
    Some(basic)
}

/// 401 and 403: the node refused the credentials.
pub(super) fn is_denied(status: http::StatusCode) -> bool {
    status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN
}

/// Whether copies of a request that could not be delivered may wait in
/// their nodes' queues: a node accepted the client's credentials just now
/// (`checked`), or one of `nodes` accepted them before or needs none.
/// Else why not, for the client.
pub(super) fn may_queue_unchecked(
    checked: bool,
    nodes: &[Arc<Node>],
    credentials: Option<&Secret>,
) -> Result<(), String> {
    if checked || nodes.iter().any(|node| node.vouches_for(credentials)) {
        return Ok(());
    }
    Err("not queued: no node can check the credentials now, and none accepted them before".into())
}
