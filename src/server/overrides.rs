//! Node mode overrides as the server applies them, and `[control]
//! auto_recover`.
//!
//! The live table is always built from the running configuration (which
//! keeps the configured modes) with two things on top, in
//! [`NodeOverrides::effective`]:
//!
//! * the overrides last read from Redis ([`record`], then rebuilt by `reload`, both called by the follower
//!   in [`crate::routing::source::overrides`]): each named node that exists
//!   gets the override's mode; others are ignored. Clearing an override
//!   restores the configured mode with the next table;
//! * nodes held `write-only` by auto-recover: with `auto_recover = true`, a
//!   node that newly appears in a cluster that already had nodes (an SRV
//!   cluster scaled up, a routing change) is write-only in the very table
//!   that first has it, so it never answers a read before it is
//!   recovered. Nodes of the first table after start do not count, nor do
//!   the nodes of a cluster that had none (an SRV cluster's first
//!   discovery, a new cluster: there is no replica to recover from). Then
//!   [`control::auto_recover::enqueue`] claims the node in Redis and
//!   enqueues one recover-node job (retried until Redis and RabbitMQ
//!   answer); once the overrides have been read again after that, the
//!   Redis override (stored with the claim, cleared by the job) decides.
//!   A node that leaves the cluster loses its hold; when it comes back the
//!   claim is tried again and finds the job already there.
//!
//! The receipt a router writes ([`receipt`]) says which routing document
//! version and overrides version its live table has.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::Shared;
use crate::config::{Config, NodeMode};
use crate::control;
use crate::routing::overrides::{self, Overrides, Receipt};
use crate::routing::source::Wake;

/// The overrides and auto-recover holds of one router.
#[derive(Debug, Default)]
pub struct NodeOverrides {
    state: Mutex<State>,
    /// Wakes the overrides follower (set when it starts).
    wake: OnceLock<mpsc::Sender<Wake>>,
    /// This router's id in `P:routers`.
    router_id: OnceLock<String>,
    /// Whether new nodes are looked for (after the first table).
    armed: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// The overrides last read from Redis.
    applied: Overrides,
    /// Their version.
    version: u64,
    /// Nodes held write-only by auto-recover.
    holds: BTreeMap<(String, String), Hold>,
}

#[derive(Debug, Clone)]
struct Hold {
    since_ns: i64,
    job_id: String,
    /// When the claim in Redis was settled (the override stored, or found
    /// to be someone else's): a read of the overrides that began after it
    /// ends the hold.
    settled: Option<Instant>,
}

impl NodeOverrides {
    /// This router's id in `P:routers` (set once the listener is bound).
    pub fn router_id(&self) -> Option<&str> {
        self.router_id.get().map(String::as_str)
    }

    pub(super) fn set_router_id(&self, id: String) {
        let _ = self.router_id.set(id);
    }

    pub(super) fn set_wake(&self, wake: mpsc::Sender<Wake>) {
        let _ = self.wake.set(wake);
    }

    /// The overrides version applied (0 before any).
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// From now on nodes that newly appear are looked for (called once the
    /// first table after start is published).
    pub(super) fn arm(&self, config: &Config) {
        if config.control.auto_recover {
            match missing_for_auto_recover(config) {
                Some(missing) => tracing::error!(
                    "[control] auto_recover = true needs [routing] {missing}: new nodes will serve reads without being recovered"
                ),
                None => tracing::info!("auto_recover: nodes that newly appear in a cluster are write-only until recovered"),
            }
        }
        self.armed.store(true, Ordering::SeqCst);
    }

    /// The override in force for a node, for `/status`: `{mode, reason,
    /// since, since_ns, source}` (`source` is `redis`, or `auto_recover`
    /// while this router holds a new node write-only).
    pub fn shown(&self, cluster: &str, node: &str) -> Option<Value> {
        let state = self.lock();
        let key = (cluster.to_string(), node.to_string());
        if let Some(hold) = state.holds.get(&key) {
            return Some(json!({
                "mode": NodeMode::WriteOnly.as_str(),
                "reason": format!("auto_recover: new node, recover-node job {}", hold.job_id),
                "since": hold.since_ns / 1_000_000_000,
                "since_ns": hold.since_ns,
                "source": "auto_recover",
            }));
        }
        let found = state.applied.get(&key)?;
        Some(json!({
            "mode": found.mode,
            "reason": found.reason,
            "since": found.since_ns.div_euclid(1_000_000_000),
            "since_ns": found.since_ns,
            "source": "redis",
        }))
    }

    /// The configuration a table is built from for the running `candidate`
    /// (replacing `running`): overridden modes replaced, held nodes
    /// write-only. Also returns the nodes that newly appear and are to be
    /// held from now on (see [`NodeOverrides::published`]).
    pub(super) fn effective(
        &self,
        shared: &Shared,
        running: &Config,
        candidate: &Config,
    ) -> (Config, Vec<(String, String)>) {
        let state = self.lock();
        let new = if self.armed.load(Ordering::SeqCst) && shared.config.control.auto_recover {
            new_nodes(running, candidate)
                .into_iter()
                .filter(|key| !state.holds.contains_key(key))
                .filter(|(cluster, node)| match missing_for_auto_recover(&shared.config) {
                    None => true,
                    Some(missing) => {
                        tracing::error!(%cluster, %node, "a new node appeared but auto_recover cannot enqueue its recovery without [routing] {missing}; it serves reads");
                        false
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut effective = candidate.clone();
        overrides::apply_to(&mut effective, &state.applied);
        for cluster in &mut effective.clusters {
            for node in &mut cluster.nodes {
                let key = (cluster.name.clone(), node.name.clone());
                if state.holds.contains_key(&key) || new.contains(&key) {
                    node.mode = NodeMode::WriteOnly;
                }
            }
        }
        (effective, new)
    }

    /// After `config` was published (or found unchanged): holds end for
    /// nodes no longer in it, and the `new` ones are held and claimed.
    pub(super) fn published(
        &self,
        shared: &Arc<Shared>,
        config: &Config,
        new: Vec<(String, String)>,
    ) {
        let mut state = self.lock();
        state
            .holds
            .retain(|(cluster, node), _| has_node(config, cluster, node));
        for (cluster, node) in new {
            let hold = Hold {
                since_ns: crate::clock::unix_ns() as i64,
                job_id: control::jobs::new_id(),
                settled: None,
            };
            tracing::warn!(%cluster, %node, job = %hold.job_id, "auto_recover: a node newly appeared; it is write-only until a recover-node job has recovered it");
            let task = claim(
                shared.clone(),
                cluster.clone(),
                node.clone(),
                hold.job_id.clone(),
            );
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(task);
                }
                Err(_) => {
                    tracing::error!(%cluster, %node, "no runtime to enqueue the recover-node job on")
                }
            }
            state.holds.insert((cluster, node), hold);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `job_id` still holds the node.
    fn holds(&self, cluster: &str, node: &str, job_id: &str) -> bool {
        let key = (cluster.to_string(), node.to_string());
        self.lock()
            .holds
            .get(&key)
            .is_some_and(|h| h.job_id == job_id)
    }

    fn settle(&self, cluster: &str, node: &str, job_id: &str) {
        let key = (cluster.to_string(), node.to_string());
        if let Some(hold) = self.lock().holds.get_mut(&key) {
            if hold.job_id == job_id {
                hold.settled = Some(Instant::now());
            }
        }
    }
}

/// What auto-recover lacks to work: `redis_url`, `amqp_url` (or both).
fn missing_for_auto_recover(config: &Config) -> Option<&'static str> {
    match (config.routing.redis_url_set, config.routing.amqp_url_set) {
        (true, true) => None,
        (false, true) => Some("redis_url"),
        (true, false) => Some("amqp_url"),
        (false, false) => Some("redis_url and amqp_url"),
    }
}

fn has_node(config: &Config, cluster: &str, node: &str) -> bool {
    config
        .clusters
        .iter()
        .any(|c| c.name == cluster && c.nodes.iter().any(|n| n.name == node))
}

/// The nodes of `candidate` that newly appear in a cluster of `running`
/// that has nodes.
pub fn new_nodes(running: &Config, candidate: &Config) -> Vec<(String, String)> {
    let mut new = Vec::new();
    for cluster in &candidate.clusters {
        let Some(before) = running.clusters.iter().find(|c| c.name == cluster.name) else {
            continue;
        };
        if before.nodes.is_empty() {
            continue;
        }
        for node in &cluster.nodes {
            if !before.nodes.iter().any(|n| n.name == node.name) {
                new.push((cluster.name.clone(), node.name.clone()));
            }
        }
    }
    new
}

/// Records the overrides of `version` read when `read_at` began (holds
/// settled before that end); returns the origin to rebuild the table under
/// (the caller, [`super::reload`], rebuilds it).
pub fn record(shared: &Shared, version: u64, read: Overrides, read_at: Instant) -> String {
    {
        let mut state = shared.overrides.lock();
        state.applied = read;
        state.version = version;
        state
            .holds
            .retain(|_, hold| hold.settled.map_or(true, |at| at > read_at));
    }
    format!(
        "redis {} version {version}",
        overrides::overrides_key(&shared.config.routing.key_prefix)
    )
}

/// This router's receipt (without its time).
pub fn receipt(shared: &Shared) -> Receipt {
    Receipt {
        routing_version: shared.reloads.state().live_document_version.unwrap_or(0),
        overrides_version: shared.overrides.version(),
        at_ms: 0,
    }
}

/// Claims `cluster`/`node` for job `job_id` and enqueues it, trying again
/// (every second, then up to every poll interval) while Redis or RabbitMQ
/// fail and the node is still held for it; then asks for the overrides to
/// be read again.
async fn claim(shared: Arc<Shared>, cluster: String, node: String, job_id: String) {
    let routing = &shared.config.routing;
    let mut stop = shared.stop_sources.subscribe();
    let mut backoff = Duration::from_secs(1);
    while shared.overrides.holds(&cluster, &node, &job_id) {
        let result = control::auto_recover::enqueue(
            &routing.redis_url,
            &routing.amqp_url,
            &routing.key_prefix,
            &cluster,
            &node,
            &job_id,
        )
        .await;
        match result {
            Ok(control::auto_recover::Claimed::Enqueued { overrides_version }) => {
                tracing::info!(%cluster, %node, job = %job_id, overrides_version, "auto_recover: node made write-only in redis; recover-node job enqueued");
                break;
            }
            Ok(control::auto_recover::Claimed::Exists(other)) => {
                tracing::info!(%cluster, %node, job = %other, "auto_recover: a recover-node job was enqueued for this node before; none more");
                break;
            }
            Err(error) => {
                tracing::warn!(%cluster, %node, job = %job_id, %error, retry_in = ?backoff, "auto_recover: cannot enqueue the recover-node job yet; the node stays write-only");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(routing.poll_interval.max(Duration::from_secs(1)));
    }
    shared.overrides.settle(&cluster, &node, &job_id);
    if let Some(wake) = shared.overrides.wake.get() {
        let _ = wake.send(Wake::Read).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(clusters: &str) -> Config {
        let dir = std::env::temp_dir();
        let text = format!(
            "[buffer]\ndir = {:?}\n[routing]\ndefault_cluster = \"main\"\n{clusters}",
            dir.display().to_string()
        );
        Config::from_toml_str(&text, "test").unwrap()
    }

    #[test]
    fn only_nodes_joining_a_cluster_that_had_nodes_are_new() {
        let before = config(
            "[[cluster]]\nname = \"main\"\nnodes = [{ name = \"a\", url = \"http://h:1\" }]\n",
        );
        let after = config(
            "[[cluster]]\nname = \"main\"\nnodes = [{ name = \"a\", url = \"http://h:1\" }, { name = \"b\", url = \"http://h:2\" }]\n\
             [[cluster]]\nname = \"other\"\nnodes = [{ name = \"c\", url = \"http://h:3\" }]\n",
        );
        assert_eq!(new_nodes(&before, &after), [("main".into(), "b".into())]);
        assert!(new_nodes(&after, &before).is_empty());
    }
}
