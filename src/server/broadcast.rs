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
use super::forward::client_credentials;
use super::forward::{is_denied, may_queue_unchecked};
use super::forward::{send_as, Forward, HOP_BY_HOP};
use super::{full, ResponseBody, Shared};
use crate::config::Secret;
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
    let credentials = query_credentials(&forward);
    let statement = Arc::new(statement_record(q, db, credentials));
    let forward = Arc::new(forward);
    let mut tasks = JoinSet::new();
    for (index, node) in nodes.iter().cloned().enumerate() {
        let (forward, statement) = (forward.clone(), statement.clone());
        tasks.spawn(async move { (index, first_pass(&node, &forward, &statement).await) });
    }
    let mut firsts: Vec<(usize, FirstPass)> = tasks.join_all().await;
    firsts.sort_by_key(|(index, _)| *index);
    let firsts: Vec<FirstPass> = firsts.into_iter().map(|(_, f)| f).collect();
    if let Some(refusal) = firsts.iter().find_map(FirstPass::refusal) {
        // a node refused the credentials: that is the answer, nothing is queued
        return Ok(relay(refusal.0, refusal.1));
    }
    let verdict = if firsts.iter().any(|f| matches!(f, FirstPass::Queue(_))) {
        credentials_verdict(&nodes, &firsts, statement.auth.as_ref())
    } else {
        Ok(())
    };
    if let Err(why) = &verdict {
        if firsts.iter().all(|f| matches!(f, FirstPass::Queue(_))) {
            return Err(ApiError::Unavailable(format!(
                "no node could apply the statement now and it was {why}"
            )));
        }
    }
    let second = nodes.iter().zip(firsts).map(|(node, first)| {
        let (statement, verdict) = (statement.clone(), verdict.clone());
        async move {
            let applied = match (first, verdict) {
                (FirstPass::Answered(head, body), _) => Applied::Answered(head, body),
                (FirstPass::Queue(_), Err(why)) => Applied::Failed(why),
                (FirstPass::Queue(reason), Ok(())) => {
                    match node.hint((*statement).clone(), reason.as_deref()).await {
                        Ok(()) => Applied::Queued,
                        Err(message) => Applied::Failed(message),
                    }
                }
            };
            AdminAnswer {
                node: node.name().to_string(),
                applied,
            }
        }
    });
    merge(futures_util::future::join_all(second).await)
}

/// What one node did with the statement on the first pass.
#[derive(Debug)]
enum FirstPass {
    Answered(Response<()>, Bytes),
    /// To be queued, with why a direct attempt failed (when it was tried).
    Queue(Option<String>),
}

impl FirstPass {
    /// The node's answer when it refused the client's credentials.
    fn refusal(&self) -> Option<(&Response<()>, &Bytes)> {
        match self {
            FirstPass::Answered(head, body) if is_denied(head.status()) => Some((head, body)),
            _ => None,
        }
    }
}

/// Whether the nodes that could not take the statement now may get it
/// through their queues: some node accepted the client's credentials just
/// now, or one accepted them before, or they need none.
fn credentials_verdict(
    nodes: &[Arc<Node>],
    firsts: &[FirstPass],
    credentials: Option<&Secret>,
) -> Result<(), String> {
    let checked = firsts
        .iter()
        .any(|f| matches!(f, FirstPass::Answered(head, _) if head.status().is_success()));
    may_queue_unchecked(checked, nodes, credentials)
}

/// The client's credentials of a query: `u` and `p` from the URL (as
/// InfluxDB reads them), else its `Authorization` header.
fn query_credentials(forward: &Forward) -> Option<Secret> {
    let query = forward
        .path_and_query
        .split_once('?')
        .map_or("", |(_, q)| q);
    let (mut user, mut password) = (None, None);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "u" => user = Some(value.into_owned()),
            "p" => password = Some(value.into_owned()),
            _ => {}
        }
    }
    client_credentials(user.as_deref(), password.as_deref(), &forward.headers)
}

/// Broadcasts the router's own admin statement `q` (self-monitoring's
/// `CREATE DATABASE`) like a client's: to every node that takes admin
/// statements, queued for those that cannot take it now. Sent without
/// credentials, and its queued copies are replayed without them too.
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

fn statement_record(q: &str, db: &str, auth: Option<Secret>) -> Record {
    Record {
        kind: RecordKind::Statement,
        accepted_at_ms: crate::clock::unix_ms(),
        db: db.to_string(),
        rp: String::new(),
        precision: String::new(),
        gzip: false,
        auth,
        body: Payload::from(Bytes::copy_from_slice(q.as_bytes())),
    }
}

/// Applies the statement on one node now, or says it must be queued: the
/// node is down or has a backlog, or the attempt failed without an answer
/// or with a 5xx.
async fn first_pass(node: &Arc<Node>, forward: &Forward, statement: &Record) -> FirstPass {
    if node.must_queue() {
        return FirstPass::Queue(None);
    }
    match direct(node, forward).await {
        Ok((head, body)) if !head.status().is_server_error() => {
            node.auth().learn(head.status(), statement.auth.as_ref());
            FirstPass::Answered(head, body)
        }
        Ok((head, _)) => FirstPass::Queue(Some(format!("answered {}", head.status()))),
        Err(message) => FirstPass::Queue(Some(message)),
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
