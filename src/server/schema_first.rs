//! Schema first on clusters that newly hold a database.
//!
//! When a routing change gives a database a cluster it did not have (a
//! shard rule grows, a route moves), writes of that database would reach
//! the new cluster before anyone created the database there and fail with
//! "database not found". So before such a table is published, the
//! databases, their retention policies and continuous queries (not users:
//! the router has only its clusters' own credentials) are copied from a
//! node of a cluster that held them to every node of the new one, with the
//! control plane's schema functions ([`control::schema`],
//! [`control::sync_schema::apply_databases`]) and each cluster's
//! `username`/`password`. This sits on the one publish path
//! ([`super::reload`]), so every routing source gets it.
//!
//! * Nothing is asked of anyone when nothing can be new: only a candidate
//!   whose `[[route]]`s or default cluster differ from the live table's is
//!   looked at; a change of nodes only (DNS SRV, modes, URLs) is published
//!   at once.
//! * The look runs as a task, never on the caller: `SHOW DATABASES` on a
//!   node of each cluster of the live table (healthy nodes first), then, for
//!   each database whose targets under the candidate include a cluster that
//!   its targets under the live table do not, the copy. The candidate table
//!   is held meanwhile and published when the copy is done, or after
//!   [`TIMEOUT`] whatever happened (what failed is logged).
//! * A node of the new cluster that could not be brought up to date in time
//!   (down, slow) gets the statements in its durable queue, ahead of any
//!   write routed to it afterwards, like any administrative statement a node
//!   cannot take now. (Only a node the live table already has: the queue of
//!   a node new to the table belongs to the held table until it is
//!   published. Such a node that is down is logged; sync-schema it.)
//! * A newer candidate supersedes a held one: the held table is dropped and
//!   never published after it. The newer one is compared with the live
//!   table, so it does the held one's copy again if it still needs it
//!   (the copy never drops anything and repeating it changes nothing). A
//!   newer candidate that is refused does not lose the held one: the
//!   running configuration (the held one's) is published again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{timeout_at, Instant};

use super::Shared;
use crate::config::{ClusterConfig, Config, Secret};
use crate::control::{self, endpoint, http::HttpClient, influx::Influx, schema};
use crate::node::Node;
use crate::payload::Payload;
use crate::queue::{Record, RecordKind};
use crate::routing::rules::Rules;
use crate::routing::RoutingTable;

/// The longest a candidate table is held for its schema copy.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The candidate table held back while its schema is copied, if any.
#[derive(Default)]
pub struct Gate {
    state: Mutex<State>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.lock().held.as_ref().map(|h| h.table.version());
        f.debug_struct("Gate").field("held", &held).finish()
    }
}

#[derive(Default)]
struct State {
    /// Bumped by every candidate, so a held table knows it was superseded.
    generation: u64,
    held: Option<Held>,
}

struct Held {
    generation: u64,
    /// [`RoutingTable::fingerprint`] of its configuration.
    fingerprint: String,
    table: RoutingTable,
    /// The configuration of the live table when it was held.
    published: Config,
    origin: String,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a table is held for its schema copy right now.
    pub(super) fn holding(&self) -> bool {
        self.lock().held.is_some()
    }

    /// The version the held table will have when `candidate` routes exactly
    /// like it (the same file read twice): nothing new to do.
    pub(super) fn held_version(&self, candidate: &Config) -> Option<u64> {
        let state = self.lock();
        let held = state.held.as_ref()?;
        (held.fingerprint == RoutingTable::fingerprint(candidate)).then(|| held.table.version())
    }

    /// A newer candidate came: drops the held table (it will never be
    /// published) and says what it was held against.
    pub(super) fn supersede(&self) -> Option<Superseded> {
        let mut state = self.lock();
        state.generation += 1;
        let held = state.held.take()?;
        tracing::info!(version = held.table.version(), source = %held.origin, "a newer routing candidate supersedes the one held for its schema copy");
        Some(Superseded {
            published: held.published,
            origin: held.origin,
        })
    }
}

/// What a dropped held candidate was held against.
pub(super) struct Superseded {
    /// The configuration of the live table.
    pub published: Config,
    origin: String,
}

/// A newer candidate dropped the held one and was then refused: the held
/// one's configuration (still the running one) is built and held again.
pub(super) fn hold_again(
    shared: &Arc<Shared>,
    current: &RoutingTable,
    running: &Config,
    superseded: Superseded,
) {
    let version = current.version() + 1;
    let origin = superseded.origin;
    match RoutingTable::build(running, version, &origin, Some(current), &shared.monitor) {
        Ok(table) if can_hold() => {
            hold(shared, table, superseded.published, running, &origin);
        }
        Ok(table) => {
            super::swap::swap_in(shared, table, &origin);
        }
        Err(e) => {
            tracing::error!(source = %origin, error = %e, "the routing candidate held for its schema copy cannot be built again; the live table stays")
        }
    }
}

/// Whether `candidate` may give some database a cluster it did not have
/// under `published`: its routes or default cluster differ.
pub(super) fn may_add_targets(published: &Config, candidate: &Config) -> bool {
    published.routing.default_cluster != candidate.routing.default_cluster
        || format!("{:?}", published.routes) != format!("{:?}", candidate.routes)
}

/// Whether a table can be held: the copy needs a runtime to run on
/// (without one, the caller publishes at once).
pub(super) fn can_hold() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Holds `table` (built from `candidate`) until the schema of the clusters
/// it newly targets is copied from those of `published` (the live table's
/// configuration), then publishes it; returns its version. Call only when
/// [`can_hold`].
pub(super) fn hold(
    shared: &Arc<Shared>,
    table: RoutingTable,
    published: Config,
    candidate: &Config,
    origin: &str,
) -> u64 {
    let version = table.version();
    let live = shared.routing.load();
    // the nodes the held table keeps from the live one: their queues are
    // the live ones, safe to add to whatever becomes of the held table
    // (a fresh node's queue is the held table's own, closed when a newer
    // candidate drops it)
    let nodes: Vec<Arc<Node>> = live
        .nodes()
        .filter(|n| table.nodes().any(|h| Arc::ptr_eq(h, n)))
        .cloned()
        .collect();
    let generation = {
        let mut state = shared.schema_first.lock();
        state.generation += 1;
        state.held = Some(Held {
            generation: state.generation,
            fingerprint: RoutingTable::fingerprint(candidate),
            table,
            published: published.clone(),
            origin: origin.to_string(),
        });
        state.generation
    };
    tracing::info!(version, source = %origin, "routing change: looking for clusters that newly hold a database before publishing");
    let (shared, candidate) = (shared.clone(), candidate.clone());
    tokio::spawn(async move {
        let deadline = Instant::now() + TIMEOUT;
        copy_schema(&live, &published, &candidate, &nodes, deadline).await;
        publish_held(&shared, generation);
    });
    version
}

/// Publishes the held table of `generation` unless a newer candidate came.
fn publish_held(shared: &Arc<Shared>, generation: u64) {
    // the order of publish(): the running configuration, then the gate
    let _running = super::swap::lock_running(shared);
    let held = {
        let mut state = shared.schema_first.lock();
        match &state.held {
            Some(h) if h.generation == generation => state.held.take(),
            _ => None,
        }
    };
    if let Some(held) = held {
        let version = super::swap::swap_in(shared, held.table, &held.origin);
        // the Redis document it follows is now the live one (for receipts)
        shared
            .reloads
            .update(|s| s.live_document_version = s.document_version);
        tracing::info!(version, source = %held.origin, "routing table swapped after its schema copy");
    }
}

/// The databases a cluster newly holds, by where they come from.
type Work = BTreeMap<String, BTreeMap<String, (Influx, BTreeSet<String>)>>;

/// Copies what the clusters newly targeted by `candidate` lack, by
/// `deadline`; nodes not done by then get the statements in their queues.
async fn copy_schema(
    live: &RoutingTable,
    published: &Config,
    candidate: &Config,
    nodes: &[Arc<Node>],
    deadline: Instant,
) {
    let http = match HttpClient::new() {
        Ok(http) => http,
        Err(e) => {
            tracing::warn!(error = %e, "cannot copy the schema of newly targeted clusters; publishing without");
            return;
        }
    };
    let work = match timeout_at(deadline, new_targets(live, published, candidate, &http)).await {
        Ok(work) => work,
        Err(_) => {
            tracing::warn!(timeout = ?TIMEOUT, "could not list the databases of the clusters in time; publishing the routing table without a schema copy");
            return;
        }
    };
    let mut copies = Vec::new();
    for (cluster_name, sources) in &work {
        let Some(cluster) = candidate.clusters.iter().find(|c| &c.name == cluster_name) else {
            continue;
        };
        for (source, (src, databases)) in sources {
            copies.push(copy_to_cluster(
                cluster, source, src, databases, nodes, &http, deadline,
            ));
        }
    }
    futures_util::future::join_all(copies).await;
}

/// For each cluster of `candidate` that newly holds databases: which, and
/// a node of a cluster that held them.
async fn new_targets(
    live: &RoutingTable,
    published: &Config,
    candidate: &Config,
    http: &HttpClient,
) -> Work {
    let old_rules = rules(published);
    let new_rules = rules(candidate);
    let looks = published
        .clusters
        .iter()
        .map(|cluster| databases_of(live, cluster, http));
    let mut work = Work::new();
    for (cluster, found) in published
        .clusters
        .iter()
        .zip(futures_util::future::join_all(looks).await)
    {
        let Some((src, databases)) = found else {
            continue;
        };
        for db in databases.into_iter().filter(|d| d != "_internal") {
            let before = names(published, &old_rules.clusters_for_db(&db));
            if !before.contains(&cluster.name) {
                continue; // not its data under the live table
            }
            for added in names(candidate, &new_rules.clusters_for_db(&db)) {
                if before.contains(&added) {
                    continue;
                }
                let from = work.entry(added).or_default();
                if from.values().any(|(_, dbs)| dbs.contains(&db)) {
                    continue; // another holder already gives it
                }
                from.entry(cluster.name.clone())
                    .or_insert_with(|| (src.clone(), BTreeSet::new()))
                    .1
                    .insert(db.clone());
            }
        }
    }
    if work.is_empty() {
        tracing::debug!("no cluster newly holds a database");
    }
    work
}

/// The databases of `cluster`, from the first of its nodes (healthy ones
/// first) that answers, and that node.
async fn databases_of(
    live: &RoutingTable,
    cluster: &ClusterConfig,
    http: &HttpClient,
) -> Option<(Influx, Vec<String>)> {
    let order: Vec<String> = live
        .clusters()
        .iter()
        .find(|c| c.name == cluster.name)
        .map(|c| {
            c.read_candidates()
                .iter()
                .map(|n| n.name().to_string())
                .collect()
        })
        .unwrap_or_default();
    for name in order {
        let Some(node) = cluster.nodes.iter().find(|n| n.name == name) else {
            continue;
        };
        let server = Influx::new(endpoint::node_endpoint(cluster, node), http.clone());
        match schema::database_names(&server).await {
            Ok(databases) => return Some((server, databases)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list databases for the schema copy; trying another node")
            }
        }
    }
    None
}

/// Gives every node of `cluster` the `databases` of `src` (of cluster
/// `source`), by `deadline`, else through the node's queue.
async fn copy_to_cluster(
    cluster: &ClusterConfig,
    source: &str,
    src: &Influx,
    databases: &BTreeSet<String>,
    nodes: &[Arc<Node>],
    http: &HttpClient,
    deadline: Instant,
) {
    let list: Vec<String> = databases.iter().cloned().collect();
    let wanted = match timeout_at(deadline, schema::read(src, &list, schema::Scope::Databases))
        .await
    {
        Ok(Ok(wanted)) => wanted,
        Ok(Err(e)) => {
            tracing::warn!(cluster = %cluster.name, from = %source, databases = ?list, error = %e, "cannot read the schema to copy; the cluster may refuse writes of these databases");
            return;
        }
        Err(_) => {
            tracing::warn!(cluster = %cluster.name, from = %source, databases = ?list, "reading the schema to copy took too long; the cluster may refuse writes of these databases");
            return;
        }
    };
    let each = cluster
        .nodes
        .iter()
        .filter(|n| n.mode.accepts_admin())
        .map(|node_config| {
            let wanted = &wanted;
            let list = &list;
            async move {
                let endpoint = endpoint::node_endpoint(cluster, node_config);
                let auth = endpoint.authorization();
                let dst = Influx::new(endpoint, http.clone());
                let failure = match timeout_at(
                    deadline,
                    control::sync_schema::apply_databases(wanted, &dst),
                )
                .await
                {
                    Ok(Ok(plan)) => {
                        tracing::info!(node = %dst.label(), from = %source, databases = ?list, statements = plan.statements.len(), "schema copied to a cluster that newly holds these databases");
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("not done within {TIMEOUT:?}"),
                };
                let node = nodes
                    .iter()
                    .find(|n| n.cluster() == cluster.name && n.name() == node_config.name);
                queue_schema(node, wanted, auth, &dst, &failure).await;
            }
        });
    futures_util::future::join_all(each).await;
}

/// Puts the statements that create `wanted` in `node`'s queue.
async fn queue_schema(
    node: Option<&Arc<Node>>,
    wanted: &schema::Schema,
    auth: Option<String>,
    dst: &Influx,
    failure: &str,
) {
    let empty = schema::Schema {
        databases: Vec::new(),
        notes: Vec::new(),
        users: Ok(Vec::new()),
    };
    let plan = schema::plan(
        wanted,
        &empty,
        schema::Scope::Databases,
        &schema::Passwords::default(),
    );
    let Some(node) = node else {
        tracing::warn!(node = %dst.label(), error = %failure, "schema copy failed for a node new to the routing table; it may refuse writes of these databases until it gets them (sync-schema)");
        return;
    };
    let reason = format!("schema copy for newly routed databases: {failure}");
    for statement in &plan.statements {
        let record = Record {
            kind: RecordKind::Statement,
            accepted_at_ms: crate::clock::unix_ms(),
            db: String::new(),
            rp: String::new(),
            precision: String::new(),
            gzip: false,
            auth: auth.clone().map(Secret::new),
            body: Payload::from(Bytes::from(statement.text.clone())),
        };
        if let Err(e) = node.hint(record, Some(&reason)).await {
            tracing::warn!(node = %dst.label(), error = %e, "schema copy failed and could not be queued; the node may refuse writes of these databases");
            return;
        }
    }
    tracing::warn!(node = %dst.label(), error = %failure, statements = plan.statements.len(), "schema copy not done in time; its statements are queued for the node, ahead of its writes");
}

/// The compiled rules of `config`.
fn rules(config: &Config) -> Rules {
    let names: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
    let default = names
        .iter()
        .position(|n| *n == config.routing.default_cluster)
        .unwrap_or(0);
    Rules::compile(&config.routes, &names, default)
}

/// The names of clusters `indexes` of `config`.
fn names(config: &Config, indexes: &[usize]) -> BTreeSet<String> {
    indexes
        .iter()
        .filter_map(|&i| config.clusters.get(i).map(|c| c.name.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(routes: &str) -> Config {
        Config::from_toml_str(
            &format!(
                r#"
                [routing]
                default_cluster = "a"
                [[cluster]]
                name = "a"
                nodes = [{{ name = "a1", url = "http://127.0.0.1:1" }}]
                [[cluster]]
                name = "b"
                nodes = [{{ name = "b1", url = "http://127.0.0.1:2" }}]
                {routes}
                "#
            ),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn only_a_change_of_routes_or_default_is_looked_at() {
        let before = config("[[route]]\ndatabase = \"big\"\ncluster = \"a\"\n");
        let mut nodes_only = before.clone();
        nodes_only.clusters[1].nodes[0].mode = crate::config::NodeMode::ReadOnly;
        assert!(!may_add_targets(&before, &nodes_only));
        let sharded = config("[[route]]\ndatabase = \"big\"\nshard = [\"a\", \"b\"]\n");
        assert!(may_add_targets(&before, &sharded));
        let mut default = before.clone();
        default.routing.default_cluster = "b".into();
        assert!(may_add_targets(&before, &default));
    }

    #[test]
    fn new_targets_are_the_clusters_a_database_gains() {
        let before = config("[[route]]\ndatabase = \"big\"\ncluster = \"a\"\n");
        let after = config("[[route]]\ndatabase = \"big\"\nshard = [\"a\", \"b\"]\n");
        let gained = |db: &str| {
            let old = names(&before, &rules(&before).clusters_for_db(db));
            names(&after, &rules(&after).clusters_for_db(db))
                .difference(&old)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(gained("big"), ["b"]);
        assert!(gained("small").is_empty());
    }
}
