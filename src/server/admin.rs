//! Admin statements (`CREATE`, `DROP`, `ALTER`, `GRANT`, …): sent to every
//! node of the clusters they concern (all of them for databases, users and
//! privileges; see [`super::targets`]), and queued for the nodes that cannot
//! take them now.
//!
//! A node that is down or has a backlog gets the statement through its
//! durable queue, ahead of any later write, so it converges when it returns.
//! The client gets the answer of the nodes that applied it when they agree;
//! a 502 naming the nodes that failed otherwise; a 503 when no node could
//! apply it yet (it stays queued for all of them).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::ACCEPT_ENCODING;
use http::Response;
use http_body_util::{BodyExt, Full};
use tokio::task::JoinSet;

use super::error::ApiError;
use super::fanout::now_ms;
use super::query::{send_as, Forward, HOP_BY_HOP};
use super::{full, ResponseBody, Shared};
use crate::node::{Node, RequestKind};
use crate::payload::Payload;
use crate::protocol::influxql::Statement;
use crate::protocol::response::truncate;
use crate::queue::{Record, RecordKind};

/// How long an admin statement may take on one node.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest admin answer the router holds to compare nodes' answers.
const MAX_ADMIN_ANSWER: usize = 16 * 1024 * 1024;

/// What one node did with the statement.
#[derive(Debug)]
enum Applied {
    /// The node answered (whatever it said).
    Answered(Response<()>, Bytes),
    /// In the node's queue, to be applied when it is back.
    Queued,
    /// Neither applied nor queued.
    Failed(String),
}

/// One node's part in a broadcast.
#[derive(Debug)]
struct AdminAnswer {
    node: String,
    applied: Applied,
}

impl AdminAnswer {
    /// What went wrong: not queued, a non-2xx status, or an `error` in the JSON results.
    fn failure(&self) -> Option<String> {
        match &self.applied {
            Applied::Failed(message) => Some(message.clone()),
            Applied::Queued => None,
            Applied::Answered(head, _) if !head.status().is_success() => {
                Some(format!("answered {}", head.status()))
            }
            Applied::Answered(_, body) => json_error(body),
        }
    }

    fn answer(&self) -> Option<(&Response<()>, &Bytes)> {
        match &self.applied {
            Applied::Answered(head, body) => Some((head, body)),
            _ => None,
        }
    }
}

/// The first `error` in an InfluxDB JSON answer, top-level or per statement.
fn json_error(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        return Some(error.to_string());
    }
    let results = value.get("results")?.as_array()?;
    results
        .iter()
        .find_map(|r| r.get("error").and_then(|e| e.as_str()).map(str::to_string))
}

/// Sends the admin statement(s) `q` to every node and merges their answers.
pub(super) async fn broadcast(
    shared: &Arc<Shared>,
    mut forward: Forward,
    q: &str,
    statements: &[Statement<'_>],
    db: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    // answers are compared byte for byte, so they must come back uncompressed
    forward.headers.remove(ACCEPT_ENCODING);
    let table = shared.routing.load();
    let nodes: Vec<Arc<Node>> = super::targets::admin_clusters(&table, db, statements)
        .into_iter()
        .flat_map(|i| table.clusters()[i].nodes.iter())
        .filter(|n| n.mode().accepts_admin())
        .cloned()
        .collect();
    if nodes.is_empty() {
        return Err(ApiError::Unavailable(
            "no node takes administrative statements".into(),
        ));
    }
    let statement = Arc::new(statement_record(q, db));
    let forward = Arc::new(forward);
    let mut tasks = JoinSet::new();
    for (index, node) in nodes.into_iter().enumerate() {
        let (forward, statement) = (forward.clone(), statement.clone());
        tasks.spawn(async move { (index, apply(&node, &forward, &statement).await) });
    }
    let mut answers: Vec<(usize, AdminAnswer)> = tasks.join_all().await;
    answers.sort_by_key(|(index, _)| *index);
    merge(answers.into_iter().map(|(_, a)| a).collect())
}

/// Broadcasts the router's own admin statement `q` (self-monitoring's
/// `CREATE DATABASE`) like a client's: to every node that takes admin
/// statements, queued for those that cannot take it now. Sent without
/// credentials (queued copies are replayed with the cluster's).
pub async fn run_statement(
    shared: &Arc<Shared>,
    q: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    let statements = crate::protocol::influxql::parse(q);
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", q)
        .finish();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let forward = Forward {
        method: http::Method::POST,
        path_and_query: String::from("/query"),
        headers,
        body: Payload::from(Bytes::from(body)),
    };
    broadcast(shared, forward, q, &statements, "").await
}

fn statement_record(q: &str, db: &str) -> Record {
    Record {
        kind: RecordKind::Statement,
        accepted_at_ms: now_ms(),
        db: db.to_string(),
        rp: String::new(),
        precision: String::new(),
        gzip: false,
        auth: None,
        body: Payload::from(Bytes::copy_from_slice(q.as_bytes())),
    }
}

/// Applies the statement on one node now, or queues it when the node is down.
async fn apply(node: &Arc<Node>, forward: &Forward, statement: &Record) -> AdminAnswer {
    let reason = if node.must_queue() {
        None
    } else {
        match direct(node, forward).await {
            Ok((head, body)) if !head.status().is_server_error() => {
                return AdminAnswer {
                    node: node.name().to_string(),
                    applied: Applied::Answered(head, body),
                };
            }
            Ok((head, _)) => Some(format!("answered {}", head.status())),
            Err(message) => Some(message),
        }
    };
    let applied = match node.hint(statement.clone(), reason.as_deref()).await {
        Ok(()) => Applied::Queued,
        Err(message) => Applied::Failed(message),
    };
    AdminAnswer {
        node: node.name().to_string(),
        applied,
    }
}

async fn direct(node: &Arc<Node>, forward: &Forward) -> Result<(Response<()>, Bytes), String> {
    let response = send_as(RequestKind::Admin, node, forward, Some(ADMIN_TIMEOUT))
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let collect = http_body_util::Limited::new(body, MAX_ADMIN_ANSWER).collect();
    let bytes = tokio::time::timeout(ADMIN_TIMEOUT, collect)
        .await
        .map_err(|_| format!("answer not complete within {ADMIN_TIMEOUT:?}"))?
        .map_err(|e| format!("answer unreadable: {e}"))?
        .to_bytes();
    Ok((Response::from_parts(parts, ()), bytes))
}

/// The answer of the nodes that applied the statement when they agree,
/// else a 502 naming who failed; a 503 when it is only queued.
fn merge(answers: Vec<AdminAnswer>) -> Result<Response<ResponseBody>, ApiError> {
    let failures: Vec<String> = answers
        .iter()
        .filter_map(|a| {
            a.failure()
                .map(|f| format!("{}: {}", a.node, truncate(&f, 200)))
        })
        .collect();
    let queued: Vec<&str> = answers
        .iter()
        .filter(|a| matches!(a.applied, Applied::Queued))
        .map(|a| a.node.as_str())
        .collect();
    let replies: Vec<(&Response<()>, &Bytes)> =
        answers.iter().filter_map(AdminAnswer::answer).collect();
    let agree = replies
        .windows(2)
        .all(|p| p[0].0.status() == p[1].0.status() && p[0].1 == p[1].1);
    let nothing_lost = answers
        .iter()
        .all(|a| !matches!(a.applied, Applied::Failed(_)));
    if let Some((head, body)) = replies.first() {
        if nothing_lost && (failures.is_empty() || agree) {
            return Ok(relay(head, body));
        }
    } else if nothing_lost {
        return Err(ApiError::Unavailable(format!(
            "no node could apply the statement now; it is queued for {} and will be applied when they return",
            queued.join(", ")
        )));
    }
    let applied: Vec<&str> = answers
        .iter()
        .filter(|a| a.answer().is_some() && a.failure().is_none())
        .map(|a| a.node.as_str())
        .collect();
    let mut message = format!(
        "statement failed on {} of {} nodes: {}",
        failures.len(),
        answers.len(),
        failures.join("; ")
    );
    if !applied.is_empty() {
        message.push_str(&format!(" (applied on {})", applied.join(", ")));
    }
    if !queued.is_empty() {
        message.push_str(&format!(" (queued for {})", queued.join(", ")));
    }
    Err(ApiError::BadGateway(message))
}

fn relay(head: &Response<()>, body: &Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(full(Full::new(body.clone())));
    *response.status_mut() = head.status();
    for (name, value) in head.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(node: &str, status: u16, body: &'static str) -> AdminAnswer {
        let mut head = Response::new(());
        *head.status_mut() = http::StatusCode::from_u16(status).unwrap();
        AdminAnswer {
            node: node.into(),
            applied: Applied::Answered(head, Bytes::from_static(body.as_bytes())),
        }
    }

    fn queued(node: &str) -> AdminAnswer {
        AdminAnswer {
            node: node.into(),
            applied: Applied::Queued,
        }
    }

    const OK: &str = r#"{"results":[{"statement_id":0}]}"#;

    #[test]
    fn queued_nodes_do_not_spoil_the_answer_of_those_that_applied_it() {
        let response = merge(vec![answered("a", 200, OK), queued("b")]).unwrap();
        assert_eq!(response.status(), 200);
    }

    #[test]
    fn a_statement_only_queued_is_503_naming_the_nodes() {
        let err = merge(vec![queued("a"), queued("b")]).unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.to_string().contains("queued for a, b"), "{err}");
    }

    #[test]
    fn an_error_every_node_agrees_on_is_their_answer() {
        let error = r#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#;
        let response = merge(vec![answered("a", 200, error), answered("b", 200, error)]).unwrap();
        assert_eq!(response.status(), 200);
    }

    #[test]
    fn disagreeing_nodes_give_a_502_naming_who_failed() {
        let error = r#"{"results":[{"statement_id":0,"error":"user exists"}]}"#;
        let err = merge(vec![
            answered("a", 200, OK),
            answered("b", 200, error),
            queued("c"),
        ])
        .unwrap_err();
        assert_eq!(err.status(), 502);
        let message = err.to_string();
        assert!(
            message.contains("statement failed on 1 of 3 nodes: b: user exists"),
            "{message}"
        );
        assert!(
            message.contains("(applied on a)") && message.contains("(queued for c)"),
            "{message}"
        );
    }

    #[test]
    fn a_node_that_could_not_even_queue_it_is_a_502() {
        let failed = AdminAnswer {
            node: "b".into(),
            applied: Applied::Failed("not queued: full".into()),
        };
        let err = merge(vec![answered("a", 200, OK), failed]).unwrap_err();
        assert!(err.to_string().contains("b: not queued: full"), "{err}");
    }
}
