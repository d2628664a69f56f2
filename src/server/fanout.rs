//! Delivering one write to every target node: directly, or through the
//! node's durable queue, and deciding the answer from what each node did.
//!
//! A node gets the write directly when it is healthy and its queue is empty;
//! otherwise — or when the direct attempt fails with a connection error, a
//! timeout or a 5xx — the write is appended to its queue, where it counts as
//! *hinted*. A 4xx is the node's verdict on the data or the credentials and
//! is never queued. Every node's outcome is known before the client is
//! answered, so a 204 always means each node has the write or holds it on
//! disk.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::HeaderMap;
use http::{Method, Response, Uri};
use http_body_util::{BodyExt, Full};
use tokio::sync::oneshot;

use super::error::ApiError;
use super::{full, ResponseBody, Shared};
use crate::config::Consistency;
use crate::node::{Node, NodeResponseBody, RequestKind};
use crate::protocol::node_error;
use crate::queue::{Record, RecordKind};

/// Largest part of a node's error answer kept for relaying it; a longer
/// one (InfluxDB quotes the line it cannot parse, whatever its size) is
/// relayed as an error built from its first part.
const MAX_NODE_ERROR_BODY: usize = 64 * 1024;

/// Everything needed to send one write to any node, or to queue it.
#[derive(Debug)]
pub struct WriteSend {
    /// `/write?…` with the client's credentials, parsed once for every
    /// node's request.
    pub uri: Uri,
    /// The client's headers that nodes need.
    pub headers: HeaderMap,
    /// The write as it is queued: database, retention policy, precision,
    /// encoding and the body as the client sent it.
    pub record: Record,
}

impl WriteSend {
    /// A queue record for a write accepted now.
    pub fn record(
        db: &str,
        rp: Option<&str>,
        precision: Option<&str>,
        gzip: bool,
        body: crate::payload::Payload,
    ) -> Record {
        Record {
            kind: RecordKind::Write,
            accepted_at_ms: crate::clock::unix_ms(),
            db: db.to_string(),
            rp: rp.unwrap_or_default().to_string(),
            precision: precision.unwrap_or_default().to_string(),
            gzip,
            auth: None,
            body,
        }
    }
}

/// What one node made of a write.
#[derive(Debug)]
pub enum Outcome {
    Acked,
    /// Durably in the node's queue, to be replayed in order; with why it
    /// was not delivered directly, when it was tried.
    Queued(Option<String>),
    /// A 4xx: the data or the credentials are wrong; retrying cannot help.
    Rejected(Response<Full<Bytes>>),
    /// Neither delivered nor queued.
    Failed(String),
}

/// Sends `send` to every target and answers once every node's outcome is known.
///
/// One task delivers to all targets concurrently, detached from the request:
/// a client that goes away does not cut a delivery in half.
pub async fn fan_out(
    shared: &Arc<Shared>,
    targets: Vec<Arc<Node>>,
    send: Arc<WriteSend>,
    consistency: Consistency,
) -> Result<Response<ResponseBody>, ApiError> {
    let (answer, answered) = oneshot::channel();
    let task_shared = shared.clone();
    shared.background.spawn(async move {
        let outcomes = deliver(&task_shared, &targets, &send).await;
        let mut tally = Tally::new(targets.len(), consistency);
        for (node, outcome) in targets.iter().zip(outcomes) {
            tally.add(node.name(), outcome);
        }
        let _ = answer.send(tally.answer());
    });
    match answered.await {
        Ok(answer) => answer,
        Err(_) => Err(ApiError::Unavailable(
            "the write was cut off before every node had it (shutting down)".into(),
        )),
    }
}

/// What became of one node's copy on the first pass.
enum FirstPass {
    Done(Outcome),
    /// To be queued, with why a direct attempt failed (when it was tried).
    Queue(Option<String>),
}

impl FirstPass {
    fn into_outcome(self) -> Outcome {
        match self {
            FirstPass::Done(outcome) => outcome,
            FirstPass::Queue(reason) => Outcome::Failed(reason.unwrap_or_default()),
        }
    }
}

/// Delivers directly to the nodes without a backlog, then queues the copies
/// of the others, but only when no node refused the client's credentials and
/// some node checked them (or vouches for them, see [`Node::vouches_for`]):
/// a queued copy is replayed with the client's credentials and can never do
/// what the nodes would refuse.
async fn deliver(
    shared: &Arc<Shared>,
    targets: &[Arc<Node>],
    send: &Arc<WriteSend>,
) -> Vec<Outcome> {
    let firsts =
        futures_util::future::join_all(targets.iter().map(|node| first_pass(shared, node, send)))
            .await;
    if firsts.iter().all(|f| matches!(f, FirstPass::Done(_))) {
        return firsts.into_iter().map(FirstPass::into_outcome).collect();
    }
    let verdict = credentials_verdict(targets, &firsts, send.record.auth.as_ref());
    let hints = targets.iter().zip(firsts).map(|(node, first)| {
        let verdict = verdict.clone();
        async move {
            match (first, verdict) {
                (FirstPass::Done(outcome), _) => outcome,
                (FirstPass::Queue(_), Err(why)) => Outcome::Failed(why),
                (FirstPass::Queue(reason), Ok(())) => {
                    match Box::pin(node.hint(send.record.clone(), reason.as_deref())).await {
                        Ok(()) => Outcome::Queued(reason),
                        Err(message) => Outcome::Failed(message),
                    }
                }
            }
        }
    });
    futures_util::future::join_all(hints).await
}

/// Whether the copies that could not be delivered may be queued: `Err`
/// with the reason when a node refused the credentials, or when no node
/// checked them and none vouches for them.
fn credentials_verdict(
    targets: &[Arc<Node>],
    firsts: &[FirstPass],
    credentials: Option<&crate::config::Secret>,
) -> Result<(), String> {
    let mut checked = false;
    for (node, first) in targets.iter().zip(firsts) {
        match first {
            FirstPass::Done(Outcome::Rejected(response))
                if super::forward::is_denied(response.status()) =>
            {
                return Err(format!(
                    "not queued: {} refused the credentials ({})",
                    node.name(),
                    response.status()
                ));
            }
            FirstPass::Done(Outcome::Acked) => checked = true,
            _ => {}
        }
    }
    super::forward::may_queue_unchecked(checked, targets, credentials)
}

/// Delivers to one node directly when it has no backlog; else says it must
/// be queued.
async fn first_pass(shared: &Arc<Shared>, node: &Arc<Node>, send: &Arc<WriteSend>) -> FirstPass {
    if node.must_queue() {
        return FirstPass::Queue(None);
    }
    // the rarer paths are boxed: this future is moved around whole, so
    // it should only be as large as the common path needs
    let outcome = match &shared.coalescer {
        Some(coalescer) if coalescer.accepts(send) => {
            Box::pin(coalescer.submit(shared, node, send)).await
        }
        _ => direct(shared, node, send, send.record.body.clone()).await,
    };
    match outcome {
        Outcome::Failed(message) => FirstPass::Queue(Some(message)),
        delivered => FirstPass::Done(delivered),
    }
}

/// One attempt to write `send` (or, for a merged batch, `body`) to `node`
/// within the write timeout.
pub(super) async fn direct(
    shared: &Shared,
    node: &Arc<Node>,
    send: &WriteSend,
    body: crate::payload::Payload,
) -> Outcome {
    let timeout = shared.config.write.timeout;
    match tokio::time::timeout(
        timeout,
        attempt_payload(
            node,
            &send.uri,
            &send.headers,
            send.record.auth.as_ref(),
            body,
        ),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failed(format!("timed out after {timeout:?}")),
    }
}

/// One POST of `body` to `uri` (a path and query) on `node`, and what the
/// node made of it.
async fn attempt_payload(
    node: &Arc<Node>,
    uri: &Uri,
    headers: &HeaderMap,
    credentials: Option<&crate::config::Secret>,
    body: crate::payload::Payload,
) -> Outcome {
    let mut request = node.request(Method::POST, uri.clone());
    if let Some(request_headers) = request.headers_mut() {
        for (name, value) in headers {
            request_headers.append(name.clone(), value.clone());
        }
    }
    let response = match node.send(RequestKind::Write, request, body, None).await {
        Ok(response) => response,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let status = response.status();
    node.auth().learn(status, credentials);
    let (mut parts, body) = response.into_parts();
    let body = read_small(body).await;
    if status.is_success() {
        Outcome::Acked
    } else if status.is_client_error() {
        for name in super::forward::HOP_BY_HOP {
            parts.headers.remove(name);
        }
        parts.headers.remove(http::header::CONTENT_LENGTH);
        Outcome::Rejected(Response::from_parts(parts, Full::new(body)))
    } else {
        Outcome::Failed(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ))
    }
}

/// A node's answer body when it is whole and at most
/// [`MAX_NODE_ERROR_BODY`]; else InfluxDB's JSON error built from what was
/// read, marked as truncated ([`node_error::error_text`]).
async fn read_small(body: NodeResponseBody) -> Bytes {
    let (read, complete) = read_prefix(body, MAX_NODE_ERROR_BODY).await;
    if complete {
        return read;
    }
    let error = serde_json::json!({ "error": node_error::error_text(&read, false) });
    Bytes::from(serde_json::to_vec(&error).unwrap_or_default())
}

/// The first `max` bytes of `body` at most, and whether that is all of it
/// (false when it is longer or breaks off).
async fn read_prefix(mut body: NodeResponseBody, max: usize) -> (Bytes, bool) {
    let mut read = BytesMut::new();
    loop {
        let data = match body.frame().await {
            None => return (read.freeze(), true),
            Some(Err(_)) => return (read.freeze(), false),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        let room = max - read.len();
        if data.len() > room {
            read.extend_from_slice(&data[..room]);
            return (read.freeze(), false);
        }
        read.extend_from_slice(&data);
    }
}

/// Node outcomes of one write, and the answer they add up to.
#[derive(Debug)]
pub struct Tally {
    targets: usize,
    consistency: Consistency,
    acked: usize,
    queued: usize,
    rejected: Option<Response<Full<Bytes>>>,
    failures: Vec<String>,
}

impl Tally {
    pub fn new(targets: usize, consistency: Consistency) -> Tally {
        Tally {
            targets,
            consistency,
            acked: 0,
            queued: 0,
            rejected: None,
            failures: Vec::new(),
        }
    }

    /// Acknowledgements the level needs (`any` counts queued copies too).
    fn required(&self) -> usize {
        match self.consistency {
            Consistency::Any | Consistency::All => self.targets,
            Consistency::One => 1,
            Consistency::Quorum => self.targets / 2 + 1,
        }
    }

    fn met(&self) -> bool {
        let counted = match self.consistency {
            Consistency::Any => self.acked + self.queued,
            _ => self.acked,
        };
        counted >= self.required()
    }

    pub fn add(&mut self, node: &str, outcome: Outcome) {
        match outcome {
            Outcome::Acked => self.acked += 1,
            Outcome::Queued(reason) => {
                self.queued += 1;
                let why = reason.map(|r| format!("{r}; ")).unwrap_or_default();
                self.failures.push(format!("{node}: {why}queued"));
            }
            Outcome::Rejected(response) => {
                self.failures
                    .push(format!("{node}: answered {}", response.status()));
                self.rejected.get_or_insert(response);
            }
            Outcome::Failed(message) => self.failures.push(format!("{node}: {message}")),
        }
    }

    /// 204 when the level is met; else a node's 4xx as it sent it; else 503.
    pub fn answer(mut self) -> Result<Response<ResponseBody>, ApiError> {
        if self.met() {
            return Ok(super::status::no_content());
        }
        if let Some(rejected) = self.rejected.take() {
            return Ok(rejected.map(full));
        }
        Err(ApiError::Unavailable(format!(
            "write could not meet consistency {:?}: {} of {} nodes acknowledged and {} queued, {} needed; {}",
            self.consistency.to_string(),
            self.acked,
            self.targets,
            self.queued,
            self.required(),
            self.failures.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16) -> Outcome {
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"{\"error\":\"partial write\"}",
        )));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Outcome::Rejected(response)
    }

    fn tally(
        consistency: Consistency,
        outcomes: Vec<Outcome>,
    ) -> Result<Response<ResponseBody>, ApiError> {
        let mut tally = Tally::new(outcomes.len(), consistency);
        for (i, outcome) in outcomes.into_iter().enumerate() {
            tally.add(&format!("n{i}"), outcome);
        }
        tally.answer()
    }

    fn failed() -> Outcome {
        Outcome::Failed("refused".into())
    }

    #[test]
    fn any_is_met_by_acknowledged_and_queued_copies_together() {
        assert_eq!(
            tally(
                Consistency::Any,
                vec![Outcome::Acked, Outcome::Queued(None)]
            )
            .unwrap()
            .status(),
            204
        );
        assert_eq!(
            tally(
                Consistency::Any,
                vec![Outcome::Queued(None), Outcome::Queued(None)]
            )
            .unwrap()
            .status(),
            204
        );
        let err = tally(Consistency::Any, vec![Outcome::Acked, failed()]).unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(
            err.to_string()
                .contains("1 of 2 nodes acknowledged and 0 queued, 2 needed; n1: refused"),
            "{err}"
        );
    }

    #[test]
    fn one_needs_a_real_acknowledgement() {
        assert_eq!(
            tally(
                Consistency::One,
                vec![failed(), Outcome::Acked, Outcome::Queued(None)]
            )
            .unwrap()
            .status(),
            204
        );
        assert!(tally(
            Consistency::One,
            vec![Outcome::Queued(None), Outcome::Queued(None)]
        )
        .is_err());
    }

    #[test]
    fn quorum_needs_a_majority_of_acknowledgements() {
        assert_eq!(
            tally(
                Consistency::Quorum,
                vec![Outcome::Acked, Outcome::Queued(None), Outcome::Acked]
            )
            .unwrap()
            .status(),
            204
        );
        let err = tally(
            Consistency::Quorum,
            vec![Outcome::Acked, Outcome::Queued(None), failed()],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("1 of 3 nodes acknowledged and 1 queued, 2 needed"),
            "{err}"
        );
    }

    #[test]
    fn all_fails_when_one_node_only_has_it_queued() {
        let err = tally(
            Consistency::All,
            vec![Outcome::Acked, Outcome::Queued(None)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("n1: queued"), "{err}");
    }

    #[test]
    fn a_node_rejection_is_relayed_when_the_level_is_not_met() {
        assert_eq!(
            tally(Consistency::Any, vec![Outcome::Acked, rejected(400)])
                .unwrap()
                .status(),
            400
        );
        assert_eq!(
            tally(Consistency::One, vec![Outcome::Acked, rejected(400)])
                .unwrap()
                .status(),
            204
        );
    }
}
