//! `/ping`, `/health`, `/status` and `/metrics`: what the router says about itself.
//!
//! `/ping` answers like InfluxDB (204 with version headers, or 200 JSON
//! with `verbose=true`) and reports the version of the nodes behind it.
//! `/health` is 200 while every cluster has a healthy node, else 503.

use crate::config::RoutingSource;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::{full, ResponseBody, Shared, FALLBACK_VERSION};
use crate::node::Node;
use crate::protocol::response;

const VERSION_HEADER: HeaderName = HeaderName::from_static("x-influxdb-version");
const BUILD_HEADER: HeaderName = HeaderName::from_static("x-influxdb-build");
const ROUTER_HEADER: HeaderName = HeaderName::from_static("x-influxdb-router");

/// A bare 204.
pub fn no_content() -> Response<ResponseBody> {
    response::empty(StatusCode::NO_CONTENT).map(full)
}

/// Adds InfluxDB's version headers to an answer that lacks them.
pub fn stamp_headers(shared: &Shared, headers: &mut HeaderMap) {
    if !headers.contains_key(VERSION_HEADER) {
        headers.insert(VERSION_HEADER, node_version(shared));
    }
    if !headers.contains_key(BUILD_HEADER) {
        headers.insert(BUILD_HEADER, HeaderValue::from_static(response::BUILD));
    }
    headers.insert(ROUTER_HEADER, HeaderValue::from_static(crate::VERSION));
}

/// The version the first node that told us reports.
fn node_version(shared: &Shared) -> HeaderValue {
    let table = shared.routing.load();
    let version = table.nodes().find_map(|n| n.version_header());
    version.unwrap_or(FALLBACK_VERSION)
}

/// `GET|HEAD /ping`.
pub fn ping<B>(shared: &Shared, request: &Request<B>) -> Response<ResponseBody> {
    let verbose = super::head::query_of(request.uri(), request.extensions())
        .map(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "verbose" && v == "true"))
        .unwrap_or(false);
    if !verbose {
        return no_content();
    }
    let version = node_version(shared);
    let body = json!({ "version": version.to_str().unwrap_or("unknown") });
    response::json(StatusCode::OK, &body).map(full)
}

/// `GET /health`.
pub fn health(shared: &Shared) -> Response<ResponseBody> {
    let table = shared.routing.load();
    let clusters: Vec<Value> = table
        .clusters()
        .iter()
        .map(|c| {
            let healthy = c.nodes.iter().filter(|n| n.is_healthy() && n.mode().accepts_admin()).count();
            json!({ "name": c.name, "healthy_nodes": healthy, "nodes": c.nodes.iter().map(|n| node_health(n)).collect::<Vec<_>>() })
        })
        .collect();
    let down: Vec<&str> = table
        .clusters()
        .iter()
        .filter(|c| {
            !c.nodes
                .iter()
                .any(|n| n.is_healthy() && n.mode().accepts_writes())
        })
        .map(|c| c.name.as_str())
        .collect();
    let (status, state, message) = if down.is_empty() {
        (
            StatusCode::OK,
            "pass",
            "ready for queries and writes".to_string(),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "fail",
            format!(
                "no healthy write-enabled node in cluster {}",
                down.join(", ")
            ),
        )
    };
    let body = json!({ "name": "influxdb-router", "status": state, "message": message, "version": crate::VERSION, "clusters": clusters });
    response::json(status, &body).map(full)
}

/// A node's entry in `/health`; an unhealthy node says what went wrong last.
fn node_health(node: &Node) -> Value {
    let healthy = node.is_healthy();
    let error = if healthy {
        None
    } else {
        node.detail().last_error
    };
    json!({ "name": node.name(), "url": node.base_url(), "mode": node.mode().to_string(), "healthy": healthy, "last_error": error })
}

/// `GET /status`.
pub fn status(shared: &Arc<Shared>) -> Response<ResponseBody> {
    let table = shared.routing.load();
    let reloads = shared.reloads.state();
    let nodes: Vec<Value> = table.nodes().map(|n| node_status(shared, n)).collect();
    let body = json!({
        "version": crate::VERSION,
        "uptime_seconds": shared.started.elapsed().as_secs(),
        "routing": {
            // SPEC: the Redis document's version with `source = "redis"` (0 before
            // one is applied), else a count of swaps
            "version": match shared.config.routing.source {
                // (of the table in force: a table held for its schema copy is not yet)
                RoutingSource::Redis => reloads.live_document_version.unwrap_or(0),
                RoutingSource::File => table.version(),
            },
            "table_version": table.version(),
            "document_version": reloads.document_version,
            "source": table.source().description,
            "loaded_at": unix_seconds(table.source().loaded_at),
            "default_cluster": table.default_cluster().name,
            "moves": table.moves().iter().map(|m| json!({
                "database": m.database.as_str(),
                "measurement": m.measurement.as_ref().map(|g| g.as_str()),
                "from": m.from, "to": m.to, "state": m.state.as_str(),
            })).collect::<Vec<_>>(),
            "swaps": reloads.swaps,
            "notices_subscribed": reloads.notices_subscribed,
            "refused": reloads.refused,
            // node mode overrides from Redis (with `redis_url`): the version applied
            "overrides_version": shared.overrides.version(),
            "router_id": shared.overrides.router_id(),
            "last_refused": reloads.last_refused.as_ref().map(|r| json!({
                "at": unix_seconds(r.at), "source": r.source, "problems": r.problems,
            })),
        },
        "nodes": nodes,
        "udp": shared.udp.status(&shared.config),
        "orphan_queues": shared.orphans.iter().map(|o| json!({
            "cluster": o.cluster, "node": o.node, "dir": o.dir.display().to_string(), "bytes": o.bytes,
        })).collect::<Vec<_>>(),
    });
    response::json(StatusCode::OK, &body).map(full)
}

/// `GET /metrics`: the Prometheus text exposition (see [`crate::monitor`]).
pub fn metrics(shared: &Shared) -> Response<ResponseBody> {
    let table = shared.routing.load();
    let text = shared.monitor.render(table.version(), table.nodes());
    let mut response = Response::new(full(http_body_util::Full::new(bytes::Bytes::from(text))));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    response
}

/// The content type of the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn node_status(shared: &Shared, node: &Node) -> Value {
    let detail = node.detail();
    let stats = node.queue().stats();
    let now_ms = crate::clock::unix_ms();
    let replaying = detail
        .replayed_at
        .is_some_and(|at| at.elapsed().map(|e| e.as_secs() < 10).unwrap_or(false));
    let queue = json!({
        "dir": node.queue().dir().display().to_string(),
        "bytes": stats.bytes,
        "records": stats.records,
        "oldest_record_age_seconds": stats.oldest_accepted_at_ms.map(|at| now_ms.saturating_sub(at) as f64 / 1000.0),
        "appended": stats.appended,
        "replayed": stats.replayed,
        "replay_rate": if replaying { detail.replay_rate } else { 0.0 },
        "dead_letters": stats.dead_letters,
        "dropped": stats.dropped,
        "corrupt_bytes_cut": stats.corrupt_bytes_cut,
        "corrupt_regions_skipped": stats.corrupt_regions_skipped,
        "position_persist_failing": stats.position_persist_failing,
        "position_error": stats.position_error,
        "last_error": detail.replay_error,
    });
    json!({
        "name": node.name(),
        "cluster": node.cluster(),
        "url": node.base_url(),
        // the effective mode; `override` says why when it is not the configured one
        "mode": node.mode().to_string(),
        "override": shared.overrides.shown(node.cluster(), node.name()),
        "health": if node.is_healthy() { "healthy" } else { "unhealthy" },
        "in_flight": node.in_flight(),
        "influxdb_version": node.version_header().as_ref().and_then(|v| v.to_str().ok()),
        "last_error": detail.last_error,
        "last_error_at": detail.last_error_at.map(unix_seconds),
        "last_check_at": detail.last_check_at.map(unix_seconds),
        "queue": queue,
    })
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
