//! Merging small concurrent writes into one node request (`[write]
//! coalesce_delay` and `coalesce_max_bytes`).
//!
//! InfluxDB ingests one 5,000-line request far more cheaply than 500 requests
//! of 10 lines. With coalescing on, writes for the same node and the same
//! `/write?…` path (database, retention policy, precision and credentials)
//! and headers share requests, the way Nagle's algorithm shares packets: a
//! write goes out at once when no request for its key is in flight;
//! otherwise it joins a batch, which goes out as one request as soon as the
//! request in flight is answered, when it reaches `coalesce_max_bytes`, or
//! when its first write has waited `coalesce_delay`, whichever comes first.
//! So a lone write waits for nothing, and under load the batches grow with
//! the node's answer time. Gzip bodies, bodies above [`MAX_MERGED_BODY`]
//! and bodies of at least `coalesce_max_bytes` are never merged.
//!
//! Merging pays for small bodies only: it saves a node request per write,
//! but it also keeps one request per key in flight, so large bodies that
//! would have gone out side by side queue behind each other. With 32
//! clients, merging doubled the writes per second of 16 KB bodies, gained
//! at 33 KB, broke even at 49 KB and gained nothing beyond; 510 KB batches
//! lost a third of their throughput (PERFORMANCE.md). Larger bodies go
//! straight to the node.
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

use super::fanout::{direct, Outcome, WriteSend};
use super::Shared;
use crate::config::CoalesceConfig;
use crate::node::Node;
use crate::payload::Payload;

/// The largest body that may wait to be merged with others: 32 KiB, about
/// 300 Telegraf-like lines (a Telegraf batch of 5,000 lines is about 500 KB).
pub const MAX_MERGED_BODY: u64 = 32 * 1024;

/// Writes that may share one request: same node, same path, same headers.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BatchKey {
    /// The node's address in memory: a pending batch holds an `Arc` of the
    /// node, so the address cannot be reused while the key is in the map.
    node: usize,
    /// The `/write?…` path and query.
    uri: http::Uri,
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
    slots: HashMap<Arc<BatchKey>, Slot>,
}

/// One key's requests in flight and the batch waiting for them.
#[derive(Debug, Default)]
struct Slot {
    in_flight: usize,
    batch: Option<Batch>,
}

/// What a write does after it was registered.
enum Plan {
    /// Nothing in flight: send it now, alone.
    Alone,
    /// First of a new batch: wait for the delay (or an earlier send).
    Lead(u64),
    /// It filled the batch: send the batch now.
    Full(Batch),
    /// Joined a batch someone else sends.
    Join,
}

impl Coalescer {
    pub fn new(config: CoalesceConfig) -> Coalescer {
        Coalescer {
            config,
            pending: Mutex::new(Pending::default()),
        }
    }

    /// Whether `send` may wait for others: small (at most
    /// [`MAX_MERGED_BODY`], and below `coalesce_max_bytes`) and not gzip.
    pub fn accepts(&self, send: &WriteSend) -> bool {
        let size = send.record.body.len();
        send.record.kind == crate::queue::RecordKind::Write
            && !send.record.gzip
            && size <= MAX_MERGED_BODY
            && size < self.config.max_bytes
            && !send.headers.contains_key(CONTENT_ENCODING)
    }

    /// Sends `send` to `node` as part of a batch, and returns what the node
    /// made of this write.
    pub async fn submit(
        &self,
        shared: &Arc<Shared>,
        node: &Arc<Node>,
        send: &Arc<WriteSend>,
    ) -> Outcome {
        let (answer, mut outcome) = oneshot::channel();
        let key = Arc::new(BatchKey {
            node: Arc::as_ptr(node) as usize,
            uri: send.uri.clone(),
            headers: send
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        });
        let size = send.record.body.len();
        let plan = {
            let mut pending = self.lock();
            let next_id = pending.next_id;
            let slot = pending.slots.entry(key.clone()).or_default();
            if slot.in_flight == 0 && slot.batch.is_none() {
                slot.in_flight += 1;
                Plan::Alone
            } else {
                let part = Part {
                    send: send.clone(),
                    answer,
                };
                match slot.batch.take() {
                    Some(mut batch) => {
                        batch.bytes += size;
                        batch.parts.push(part);
                        if batch.bytes >= self.config.max_bytes {
                            slot.in_flight += 1;
                            Plan::Full(batch)
                        } else {
                            slot.batch = Some(batch);
                            Plan::Join
                        }
                    }
                    None => {
                        slot.batch = Some(Batch {
                            id: next_id,
                            node: node.clone(),
                            parts: vec![part],
                            bytes: size,
                        });
                        pending.next_id += 1;
                        Plan::Lead(next_id)
                    }
                }
            }
        };
        match plan {
            Plan::Alone => {
                let outcome = direct(shared, node, send, send.record.body.clone()).await;
                self.answered(shared, &key);
                return outcome;
            }
            Plan::Full(batch) => {
                flush(shared, batch).await;
                self.answered(shared, &key);
            }
            Plan::Lead(id) => {
                tokio::select! {
                    // sent before the delay was over
                    answered = &mut outcome => return answered.unwrap_or_else(|_| abandoned()),
                    _ = tokio::time::sleep(self.config.delay) => {}
                }
                let batch = {
                    let mut pending = self.lock();
                    pending.slots.get_mut(&key).and_then(|slot| {
                        let ours = slot.batch.as_ref().is_some_and(|b| b.id == id);
                        let batch = if ours { slot.batch.take() } else { None };
                        if batch.is_some() {
                            slot.in_flight += 1;
                        }
                        batch
                    })
                };
                if let Some(batch) = batch {
                    flush(shared, batch).await;
                    self.answered(shared, &key);
                }
            }
            Plan::Join => {}
        }
        outcome.await.unwrap_or_else(|_| abandoned())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request for `key` was answered: the batch that gathered meanwhile,
    /// if any, goes out now, from a task of its own so that the write just
    /// answered is not kept waiting for it.
    fn answered(&self, shared: &Arc<Shared>, key: &Arc<BatchKey>) {
        let batch = {
            let mut pending = self.lock();
            let Some(slot) = pending.slots.get_mut(key) else {
                return;
            };
            slot.in_flight = slot.in_flight.saturating_sub(1);
            match slot.batch.take() {
                Some(batch) => {
                    slot.in_flight += 1;
                    Some(batch)
                }
                None => {
                    if slot.in_flight == 0 {
                        pending.slots.remove(key);
                    }
                    None
                }
            }
        };
        if let Some(batch) = batch {
            let (shared, key) = (shared.clone(), key.clone());
            let task_shared = shared.clone();
            shared.background.spawn(async move {
                flush(&task_shared, batch).await;
                if let Some(coalescer) = &task_shared.coalescer {
                    coalescer.answered(&task_shared, &key);
                }
            });
        }
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
            let outcome = direct(shared, &node, &part.send, body).await;
            let _ = part.answer.send(outcome);
        }
        return;
    }
    let merged = merge(parts.iter().map(|p| &p.send.record.body));
    match direct(shared, &node, &parts[0].send, merged).await {
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
                    let outcome = direct(shared, &node, &part.send, body).await;
                    let _ = part.answer.send(outcome);
                }
            });
            futures_util::future::join_all(singles).await;
        }
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
    use std::time::Duration;

    fn coalescer(max_bytes: u64) -> Coalescer {
        Coalescer::new(CoalesceConfig {
            delay: Duration::from_millis(1),
            max_bytes,
        })
    }

    fn write_of(bytes: usize) -> WriteSend {
        let body = Payload::from(Bytes::from(vec![b'x'; bytes]));
        WriteSend {
            uri: http::Uri::from_static("/write?db=d"),
            headers: http::HeaderMap::new(),
            record: WriteSend::record("d", None, None, false, body),
        }
    }

    #[test]
    fn a_body_above_the_merge_limit_goes_straight_to_the_node() {
        let coalescer = coalescer(1 << 20);
        let limit = MAX_MERGED_BODY as usize;
        assert!(coalescer.accepts(&write_of(978)));
        assert!(coalescer.accepts(&write_of(limit)));
        assert!(!coalescer.accepts(&write_of(limit + 1)));
        assert!(!coalescer.accepts(&write_of(517_772)), "a 5,000-line batch");
    }

    #[test]
    fn a_body_of_coalesce_max_bytes_is_not_merged_either() {
        let coalescer = coalescer(1024);
        assert!(coalescer.accepts(&write_of(1023)));
        assert!(!coalescer.accepts(&write_of(1024)));
    }

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
