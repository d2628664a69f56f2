//! Jobs in Redis: the record of each job (a hash), the list of jobs (a
//! sorted set by creation time), each job's finished pieces (a hash, the
//! [`RedisLedger`] a resumed job reads), and the node locks ([`Locks`]).
//!
//! Keys, for key prefix `P`: `P:job:<id>`, `P:jobs`, `P:job:<id>:pieces`,
//! `P:lock:<node>`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

use super::JobMessage;
use crate::control::ledger::Ledger;
use crate::control::ControlError;

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one Redis command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A job's record: the fields of its hash.
pub type Record = BTreeMap<String, String>;

/// The job records of one key prefix.
#[derive(Clone)]
pub struct Store {
    client: redis::Client,
    conn: MultiplexedConnection,
    prefix: String,
    url: String,
}

fn failed(url: &str, e: impl std::fmt::Display) -> ControlError {
    ControlError::Failed(format!("Redis at {url}: {e}"))
}

impl Store {
    /// Connects to Redis at `url`, failing within a few seconds when it is down.
    pub async fn connect(url: &str, prefix: &str) -> Result<Store, ControlError> {
        let client = redis::Client::open(url).map_err(|e| failed(url, e))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(COMMAND_TIMEOUT);
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| failed(url, "no connection within 5 s (is Redis running?)"))?
        .map_err(|e| failed(url, e))?;
        Ok(Store {
            client,
            conn,
            prefix: prefix.to_string(),
            url: url.to_string(),
        })
    }

    pub fn job_key(&self, id: &str) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    pub fn jobs_key(&self) -> String {
        format!("{}:jobs", self.prefix)
    }

    pub fn pieces_key(&self, id: &str) -> String {
        format!("{}:job:{id}:pieces", self.prefix)
    }

    fn err(&self, e: impl std::fmt::Display) -> ControlError {
        failed(&self.url, e)
    }

    /// Writes the record of a new job (state `queued`) and lists it.
    pub async fn create(&self, job: &JobMessage) -> Result<(), ControlError> {
        let now = crate::clock::unix_ms();
        let args = serde_json::to_string(&job.args).unwrap_or_default();
        let fields = [
            ("id", job.id.clone()),
            ("kind", job.kind.clone()),
            ("args", args),
            ("state", "queued".to_string()),
            ("created_ms", now.to_string()),
            ("attempts", "0".to_string()),
            ("resumes", "0".to_string()),
            ("workers", "[]".to_string()),
            ("runs", "[]".to_string()),
        ];
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .hset_multiple(self.job_key(&job.id), &fields)
            .ignore()
            .zadd(self.jobs_key(), &job.id, now)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.err(e))
    }

    /// The record of job `id`, if there is one.
    pub async fn get(&self, id: &str) -> Result<Option<Record>, ControlError> {
        let mut conn = self.conn.clone();
        let map: HashMap<String, String> = conn
            .hgetall(self.job_key(id))
            .await
            .map_err(|e| self.err(e))?;
        Ok((!map.is_empty()).then(|| map.into_iter().collect()))
    }

    /// Sets fields of job `id`'s record.
    pub async fn set(&self, id: &str, fields: &[(&str, String)]) -> Result<(), ControlError> {
        let mut conn = self.conn.clone();
        conn.hset_multiple::<_, _, _, ()>(self.job_key(id), fields)
            .await
            .map_err(|e| self.err(e))
    }

    /// The newest `limit` jobs, newest first.
    pub async fn list(&self, limit: usize) -> Result<Vec<Record>, ControlError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn
            .zrevrange(self.jobs_key(), 0, limit.saturating_sub(1) as isize)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.get(&id).await? {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Asks job `id` to stop: a queued one is marked `cancelled` now (a
    /// worker skips it), a running one stops at its next heartbeat.
    pub async fn cancel(&self, id: &str) -> Result<String, ControlError> {
        let Some(record) = self.get(id).await? else {
            return Err(ControlError::Failed(format!("no job {id:?}")));
        };
        let state = record.get("state").cloned().unwrap_or_default();
        match state.as_str() {
            "done" | "failed" | "cancelled" => Err(ControlError::Failed(format!(
                "job {id} has ended ({state}); nothing to cancel"
            ))),
            "queued" => {
                self.set(
                    id,
                    &[
                        ("cancel", "1".into()),
                        ("state", "cancelled".into()),
                        ("ended_ms", crate::clock::unix_ms().to_string()),
                    ],
                )
                .await?;
                Ok("cancelled".into())
            }
            _ => {
                self.set(id, &[("cancel", "1".into())]).await?;
                Ok(format!(
                    "cancel requested; the job is {state} and stops at its next heartbeat"
                ))
            }
        }
    }

    /// Whether job `id` has been asked to stop.
    pub async fn cancel_requested(&self, id: &str) -> Result<bool, ControlError> {
        let mut conn = self.conn.clone();
        let flag: Option<String> = conn
            .hget(self.job_key(id), "cancel")
            .await
            .map_err(|e| self.err(e))?;
        Ok(flag.as_deref() == Some("1"))
    }

    /// The ledger of job `id`'s finished pieces.
    pub fn ledger(&self, id: &str) -> Result<RedisLedger, ControlError> {
        let mut conn = self
            .client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| self.err(e))?;
        let _ = conn.set_read_timeout(Some(COMMAND_TIMEOUT));
        let _ = conn.set_write_timeout(Some(COMMAND_TIMEOUT));
        let key = self.pieces_key(id);
        let existing: HashMap<String, String> =
            redis::Commands::hgetall(&mut conn, &key).map_err(|e| self.err(e))?;
        let entries = existing
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    serde_json::from_str(&v).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect();
        Ok(RedisLedger {
            conn,
            key,
            url: self.url.clone(),
            entries,
        })
    }

    /// The node locks of this prefix.
    pub fn locks(&self) -> Locks {
        Locks {
            conn: self.conn.clone(),
            prefix: self.prefix.clone(),
            url: self.url.clone(),
        }
    }
}

/// Finished pieces of one job, in Redis so that any worker can resume it.
/// Each piece is written before the job goes on (a short blocking call).
pub struct RedisLedger {
    conn: redis::Connection,
    key: String,
    url: String,
    entries: BTreeMap<String, serde_json::Value>,
}

impl Ledger for RedisLedger {
    fn done(&self, piece: &str) -> Option<&serde_json::Value> {
        self.entries.get(piece)
    }

    fn record(&mut self, piece: &str, detail: serde_json::Value) -> Result<(), ControlError> {
        let text = detail.to_string();
        let (conn, key) = (&mut self.conn, &self.key);
        let mut write = move || redis::Commands::hset::<_, _, _, ()>(conn, key, piece, &text);
        // a blocking call: let the runtime move other tasks off this thread
        let result = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(write)
            }
            _ => write(),
        };
        result.map_err(|e| failed(&self.url, e))?;
        self.entries.insert(piece.to_string(), detail);
        Ok(())
    }

    fn finished(&self) -> Vec<(String, serde_json::Value)> {
        self.entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// One lock per target node: `SET P:lock:<node> <owner> NX PX <ttl>`,
/// renewed by the holder's heartbeat, released by the holder only.
#[derive(Clone)]
pub struct Locks {
    conn: MultiplexedConnection,
    prefix: String,
    url: String,
}

/// Renews a lock if `owner` still holds it.
const RENEW: &str = r#"if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end"#;
/// Releases a lock if `owner` holds it.
const RELEASE: &str = r#"if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end"#;

impl Locks {
    pub fn key(&self, node: &str) -> String {
        format!("{}:lock:{node}", self.prefix)
    }

    /// Takes every lock of `nodes` for `owner`, or none: `Err(holder)` names
    /// the owner of the first lock that is taken.
    pub async fn take_all(
        &self,
        nodes: &[String],
        owner: &str,
        ttl: Duration,
    ) -> Result<Result<(), String>, ControlError> {
        let mut taken = Vec::new();
        for node in nodes {
            let mut conn = self.conn.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(self.key(node))
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut conn)
                .await
                .map_err(|e| failed(&self.url, e))?;
            if set.is_none() {
                let holder: Option<String> = conn
                    .get(self.key(node))
                    .await
                    .map_err(|e| failed(&self.url, e))?;
                if holder.as_deref() == Some(owner) {
                    // ours already (a retry within the same run)
                    taken.push(node.clone());
                    continue;
                }
                self.release_all(&taken, owner).await;
                return Ok(Err(format!(
                    "{} (lock on {node})",
                    holder.unwrap_or_else(|| "another job".into())
                )));
            }
            taken.push(node.clone());
        }
        Ok(Ok(()))
    }

    /// Extends `owner`'s locks; `false` when one was lost (expired and taken).
    pub async fn renew_all(
        &self,
        nodes: &[String],
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, ControlError> {
        let mut kept = true;
        for node in nodes {
            let mut conn = self.conn.clone();
            let n: i64 = redis::cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(self.key(node))
                .arg(owner)
                .arg(ttl.as_millis() as u64)
                .query_async(&mut conn)
                .await
                .map_err(|e| failed(&self.url, e))?;
            kept &= n == 1;
        }
        Ok(kept)
    }

    /// Releases `owner`'s locks (best effort: they expire anyway).
    pub async fn release_all(&self, nodes: &[String], owner: &str) {
        for node in nodes {
            let mut conn = self.conn.clone();
            let _: Result<i64, _> = redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(self.key(node))
                .arg(owner)
                .query_async(&mut conn)
                .await;
        }
    }
}
