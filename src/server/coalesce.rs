//! Merging small concurrent writes into one node request (`[write]
//! coalesce_delay` and `coalesce_max_bytes`).
//!
//! InfluxDB ingests one 5,000-line request far more cheaply than 500 requests
//! of 10 lines. With coalescing on, a small write for a node waits at most
//! `coalesce_delay` in a batch with the other writes for the same node and
//! the same `/write?…` path (database, retention policy, precision and
//! credentials) and headers; the batch goes out as one request when the delay
//! is over or when it reaches `coalesce_max_bytes`. The first write of a batch
//! leads it: it sleeps out the delay and sends. Gzip bodies and bodies of at
//! least `coalesce_max_bytes` are never merged.
//!
//! Every write still gets its own [`Outcome`], so each client is answered by
//! its own consistency level: when the merged request is acknowledged, every
//! part is; when it fails (connection, timeout, 5xx), every part fails and
//! each is queued on its own by the caller; when the node refuses it with a
//! 4xx, the parts are sent again one by one so that one bad write never fails
//! another client's write. (A 4xx for a partial write may have stored the good
//! lines already; sending them again is harmless, since a point with the same
//! series and time overwrites itself with the same values.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::CONTENT_ENCODING;
use tokio::sync::oneshot;

use super::fanout::{attempt_payload, Outcome, WriteSend};
use super::Shared;
use crate::config::CoalesceConfig;
use crate::node::Node;
use crate::payload::Payload;

/// Writes that may share one request: same node, same path, same headers.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BatchKey {
    /// The node's address in memory: a pending batch holds an `Arc` of the
    /// node, so the address cannot be reused while the key is in the map.
    node: usize,
    path: String,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// Writes waiting for their batch to be sent.
#[derive(Debug)]
struct Batch {
    /// Tells the leader, after its sleep, whether the batch under its key is
    /// still its own (it may have been sent early for reaching the size
    /// limit, and a new one started).
    id: u64,
    node: Arc<Node>,
    parts: Vec<Part>,
    bytes: u64,
}

#[derive(Debug)]
struct Part {
    send: Arc<WriteSend>,
    answer: oneshot::Sender<Outcome>,
}

/// The batches of every node, for one router.
#[derive(Debug)]
pub struct Coalescer {
    config: CoalesceConfig,
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    next_id: u64,
    batches: HashMap<Arc<BatchKey>, Batch>,
}

impl Coalescer {
    pub fn new(config: CoalesceConfig) -> Coalescer {
        Coalescer {
            config,
            pending: Mutex::new(Pending::default()),
        }
    }

    /// Whether `send` may wait for others: small and not gzip.
    pub fn accepts(&self, send: &WriteSend) -> bool {
        !send.record.gzip
            && send.record.body.len() < self.config.max_bytes
            && !send.headers.contains_key(CONTENT_ENCODING)
    }

    /// Sends `send` to `node` as part of a batch, and returns what the node
    /// made of this write.
    pub async fn submit(
        &self,
        shared: &Shared,
        node: &Arc<Node>,
        send: &Arc<WriteSend>,
    ) -> Outcome {
        let (answer, outcome) = oneshot::channel();
        let key = BatchKey {
            node: Arc::as_ptr(node) as usize,
            path: send.path.clone(),
            headers: send
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        };
        let (lead, full) = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let part = Part {
                send: send.clone(),
                answer,
            };
            let size = send.record.body.len();
            match pending.batches.get_mut(&key) {
                Some(batch) => {
                    batch.bytes += size;
                    batch.parts.push(part);
                    let full = (batch.bytes >= self.config.max_bytes)
                        .then(|| pending.batches.remove(&key))
                        .flatten();
                    (None, full)
                }
                None => {
                    let id = pending.next_id;
                    pending.next_id += 1;
                    let key = Arc::new(key);
                    let batch = Batch {
                        id,
                        node: node.clone(),
                        parts: vec![part],
                        bytes: size,
                    };
                    pending.batches.insert(key.clone(), batch);
                    (Some((key, id)), None)
                }
            }
        };
        if let Some(batch) = full {
            flush(shared, batch).await;
        } else if let Some((key, id)) = lead {
            let mut outcome = outcome;
            tokio::select! {
                // sent early by the write that filled it
                answered = &mut outcome => return answered.unwrap_or_else(|_| abandoned()),
                _ = tokio::time::sleep(self.config.delay) => {}
            }
            let batch = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                match pending.batches.get(&*key) {
                    Some(batch) if batch.id == id => pending.batches.remove(&*key),
                    _ => None,
                }
            };
            if let Some(batch) = batch {
                flush(shared, batch).await;
            }
            return outcome.await.unwrap_or_else(|_| abandoned());
        }
        outcome.await.unwrap_or_else(|_| abandoned())
    }
}

/// The outcome of a write whose batch was dropped unsent (never expected).
fn abandoned() -> Outcome {
    Outcome::Failed("the merged write was abandoned".to_string())
}

/// Sends a batch as one request and answers each part.
async fn flush(shared: &Shared, batch: Batch) {
    let Batch { node, parts, .. } = batch;
    if parts.len() == 1 {
        for part in parts {
            let body = part.send.record.body.clone();
            let outcome = timed(shared, &node, &part.send, body).await;
            let _ = part.answer.send(outcome);
        }
        return;
    }
    let merged = merge(parts.iter().map(|p| &p.send.record.body));
    match timed(shared, &node, &parts[0].send, merged).await {
        Outcome::Acked => {
            for part in parts {
                let _ = part.answer.send(Outcome::Acked);
            }
        }
        Outcome::Failed(message) => {
            for part in parts {
                let _ = part.answer.send(Outcome::Failed(message.clone()));
            }
        }
        Outcome::Queued(_) | Outcome::Rejected(_) => {
            // one of the writes is bad: each is sent on its own for its own verdict
            let singles = parts.into_iter().map(|part| {
                let node = node.clone();
                async move {
                    let body = part.send.record.body.clone();
                    let outcome = timed(shared, &node, &part.send, body).await;
                    let _ = part.answer.send(outcome);
                }
            });
            futures_util::future::join_all(singles).await;
        }
    }
}

/// One attempt within the write timeout.
async fn timed(shared: &Shared, node: &Arc<Node>, send: &WriteSend, body: Payload) -> Outcome {
    let timeout = shared.config.write.timeout;
    match tokio::time::timeout(
        timeout,
        attempt_payload(node, &send.path, &send.headers, body),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failed(format!("timed out after {timeout:?}")),
    }
}

/// The bodies one after another, each ending in a newline, without copying.
fn merge<'a>(bodies: impl Iterator<Item = &'a Payload>) -> Payload {
    const NEWLINE: Bytes = Bytes::from_static(b"\n");
    let mut chunks = Vec::new();
    for body in bodies {
        chunks.extend(body.chunks().iter().cloned());
        let ends_in_newline = body
            .chunks()
            .iter()
            .rev()
            .find(|c| !c.is_empty())
            .map_or(true, |c| c.ends_with(b"\n"));
        if !ends_in_newline {
            chunks.push(NEWLINE);
        }
    }
    Payload::from_chunks(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_bodies_are_separated_by_newlines_without_copying() {
        let a = Payload::from(Bytes::from_static(b"cpu v=1"));
        let b = Payload::from_chunks(vec![
            Bytes::from_static(b"mem v=2\n"),
            Bytes::from_static(b"mem v=3\n"),
        ]);
        let c = Payload::from(Bytes::from_static(b"disk v=4\n"));
        let merged = merge([&a, &b, &c].into_iter());
        assert_eq!(
            &merged.to_contiguous()[..],
            b"cpu v=1\nmem v=2\nmem v=3\ndisk v=4\n"
        );
        assert_eq!(merged.chunks()[0].as_ptr(), a.chunks()[0].as_ptr());
    }
}
