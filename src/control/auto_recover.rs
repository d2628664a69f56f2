//! `[control] auto_recover`: the one recover-node job for a node that newly
//! appeared in a cluster, claimed across routers.
//!
//! A router that sees a new node calls [`enqueue`]. In one Redis script it
//! sets `P:recover:<cluster>/<node>` to the job id (NX, expiring after
//! [`RECOVER_KEY_TTL_SECS`]) and, only when that key was free, stores the
//! node's `write-only` override and bumps the overrides version: a router
//! that finds the key taken knows the override was stored with it (until
//! the job clears it). Then the change notice goes out on the routing
//! exchange, the job record is created and its message published on the
//! jobs queue. Calling it again with the same job id (after a failure)
//! resumes where it stopped; any other id gets [`Claimed::Exists`].

use std::time::Duration;

use super::jobs::amqp::Jobs;
use super::jobs::store::Store;
use super::jobs::JobMessage;
use super::ControlError;
use crate::routing::overrides::{self, Override, RECOVER_KEY_TTL_SECS};

/// The job kind enqueued.
pub const KIND: &str = "recover-node";

/// How long connecting to Redis and one command may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`enqueue`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The node was claimed for this job: its override is stored (as
    /// overrides version `overrides_version`), the job enqueued.
    Enqueued { overrides_version: u64 },
    /// Another job (this id) was enqueued for the node before; nothing done.
    Exists(String),
}

/// The message of the recover-node job `id` for `cluster`/`node`.
pub fn job(id: &str, cluster: &str, node: &str) -> JobMessage {
    JobMessage {
        id: id.to_string(),
        kind: KIND.to_string(),
        args: vec![
            "--cluster".into(),
            cluster.into(),
            "--node".into(),
            node.into(),
        ],
    }
}

/// SET NX EX the recover key; when set (or already ours), store the
/// override and bump the version. Returns `{"1", version}` or `{"0", holder}`.
const CLAIM: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return {'1', redis.call('GET', KEYS[3]) or '0'}
end
if holder then
  return {'0', holder}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return {'1', tostring(redis.call('INCR', KEYS[3]))}
"#;

/// Claims `cluster`/`node` for the recover-node job `job_id`, makes it
/// write-only in Redis and enqueues the job (see the module docs).
pub async fn enqueue(
    redis_url: &str,
    amqp_url: &str,
    prefix: &str,
    cluster: &str,
    node: &str,
    job_id: &str,
) -> Result<Claimed, ControlError> {
    let failed =
        |e: &dyn std::fmt::Display| ControlError::Failed(format!("Redis at {redis_url}: {e}"));
    let client = redis::Client::open(redis_url).map_err(|e| failed(&e))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(REDIS_TIMEOUT)
        .set_response_timeout(REDIS_TIMEOUT);
    let mut conn = tokio::time::timeout(
        REDIS_TIMEOUT,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| failed(&"no connection within 5 s"))?
    .map_err(|e| failed(&e))?;
    let reason = format!("auto_recover: new node, recover-node job {job_id}");
    let (claimed, value): (String, String) = redis::cmd("EVAL")
        .arg(CLAIM)
        .arg(3)
        .arg(overrides::recover_key(prefix, cluster, node))
        .arg(overrides::overrides_key(prefix))
        .arg(overrides::overrides_version_key(prefix))
        .arg(job_id)
        .arg(RECOVER_KEY_TTL_SECS)
        .arg(overrides::field(cluster, node))
        .arg(Override::write_only(&reason).to_json())
        .query_async(&mut conn)
        .await
        .map_err(|e| failed(&e))?;
    if claimed != "1" {
        return Ok(Claimed::Exists(value));
    }
    let overrides_version = value.trim().parse().unwrap_or(0);
    let notice = overrides::notice(overrides_version);
    if let Err(error) = crate::routing::source::redis::publish_body(amqp_url, prefix, &notice).await
    {
        tracing::warn!(%error, "cannot announce the override; routers pick it up at their next poll");
    }
    let message = job(job_id, cluster, node);
    Store::connect(redis_url, prefix)
        .await?
        .create(&message)
        .await?;
    let jobs = Jobs::connect(amqp_url, prefix).await?;
    let published = jobs.publish(&message).await;
    jobs.close().await;
    published?;
    Ok(Claimed::Enqueued { overrides_version })
}
