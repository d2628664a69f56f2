//! The one place a new routing table is validated and published at run time.
//!
//! Sources (the watched config file, SIGHUP) hand in the text of a candidate
//! configuration. Its routing part — `[routing]`, `[[cluster]]`, `[[route]]`
//! — is validated as a whole, built into a table that keeps the nodes (and
//! their queues and health) that did not change, and published with one
//! swap; node tasks follow. An invalid candidate is refused, logged and
//! counted, and the last good table keeps serving. Other sections only take
//! effect after a restart ([limits] included); a change to them is logged.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::swap::{lock_running, swap_in};
use super::Shared;
use crate::config::{Config, NodeConfig, RoutingSource};
use crate::routing::source::Sink;
use crate::routing::RoutingTable;

/// Counts of swaps and refusals, and the last refusal, for `/status`.
#[derive(Debug, Default)]
pub struct Reloads {
    state: Mutex<ReloadState>,
}

#[derive(Debug, Clone, Default)]
pub struct ReloadState {
    pub swaps: u64,
    pub refused: u64,
    pub last_refused: Option<Refusal>,
    /// With `source = "redis"`: whether the router's notice queue is bound
    /// to the exchange right now (`None` with other sources).
    pub notices_subscribed: Option<bool>,
    /// The latest Redis routing document's version handed to this module.
    pub document_version: Option<u64>,
    /// The version of the document the live table was built from: behind
    /// [`ReloadState::document_version`] while a table is held for its
    /// schema copy (see [`super::schema_first`]). Receipts report this one.
    pub live_document_version: Option<u64>,
}

/// A candidate table that was not published, and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub at: SystemTime,
    pub source: String,
    pub problems: Vec<String>,
}

impl Reloads {
    pub fn state(&self) -> ReloadState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Records whether change notices are being received.
    pub fn set_notices_subscribed(&self, subscribed: bool) {
        self.update(|s| s.notices_subscribed = Some(subscribed));
    }

    pub(super) fn update(&self, change: impl FnOnce(&mut ReloadState)) {
        if let Ok(mut state) = self.state.lock() {
            change(&mut state);
        }
    }
}

pub use crate::routing::source::Applied;

/// The routing sources' [`Sink`]: hands their candidates to this module.
pub struct Publisher(pub Arc<Shared>);

impl Sink for Publisher {
    fn running_config(&self) -> Config {
        running_config(&self.0)
    }

    fn apply_document(&self, text: &str, origin: &str) -> Applied {
        apply_routing_document(&self.0, text, origin)
    }

    fn replace_discovered_nodes(
        &self,
        cluster: &str,
        nodes: Vec<NodeConfig>,
        origin: &str,
    ) -> Option<Applied> {
        replace_discovered_nodes(&self.0, cluster, nodes, origin)
    }

    fn set_notices_subscribed(&self, subscribed: bool) {
        self.0.reloads.set_notices_subscribed(subscribed);
    }

    fn srv_targets_unresolved(&self, cluster: &str, targets: &[String]) {
        self.0.monitor.srv_unresolved(cluster, targets.len());
    }

    fn set_document_version(&self, version: u64) {
        let holding = self.0.schema_first.holding();
        self.0.reloads.update(|s| {
            s.document_version = Some(version);
            if !holding {
                s.live_document_version = Some(version);
            }
        });
    }

    fn apply_overrides(
        &self,
        version: u64,
        overrides: crate::routing::overrides::Overrides,
        read_at: std::time::Instant,
    ) -> Applied {
        let origin = super::overrides::record(&self.0, version, overrides, read_at);
        republish(&self.0, &origin)
    }

    fn receipt(&self) -> crate::routing::overrides::Receipt {
        super::overrides::receipt(&self.0)
    }
}

/// Validates the configuration `text` read from the config file `origin`
/// and publishes its routing part (counted in
/// `influxdb_router_routing_reloads_total{source="file"}`).
///
/// Clusters discovered through DNS SRV keep the nodes last discovered for
/// them as long as their `srv` settings are unchanged.
pub fn apply(shared: &Arc<Shared>, text: &str, origin: &str) -> Applied {
    shared.monitor.routing_read(RoutingSource::File);
    apply_text(shared, text, origin, false)
}

/// Like [`apply`] for a routing document from Redis: only its
/// `default_cluster`, `[[cluster]]` and `[[route]]` are used; the running
/// `[routing]` settings (source, URLs, intervals) stay.
pub fn apply_routing_document(shared: &Arc<Shared>, text: &str, origin: &str) -> Applied {
    shared.monitor.routing_read(RoutingSource::Redis);
    apply_text(shared, text, origin, true)
}

fn apply_text(shared: &Arc<Shared>, text: &str, origin: &str, document: bool) -> Applied {
    let candidate = match Config::from_toml_str(text, origin) {
        Ok(config) => config,
        Err(e) => {
            return refuse(
                shared,
                origin,
                e.problems().iter().map(|p| p.to_string()).collect(),
            )
        }
    };
    if !document {
        warn_about_fixed_sections(&shared.config, &candidate, origin);
    }
    let mut running = lock_running(shared);
    let mut routing = shared.config.clone();
    if document {
        routing.routing.default_cluster = candidate.routing.default_cluster;
    } else {
        routing.routing = candidate.routing;
    }
    routing.clusters = candidate.clusters;
    routing.routes = candidate.routes;
    routing.moves = candidate.moves;
    keep_discovered_nodes(&running, &mut routing);
    publish(shared, &mut running, routing, origin)
}

/// Publishes the routing part of an already validated `config` from `origin`.
pub fn apply_config(shared: &Arc<Shared>, config: Config, origin: &str) -> Applied {
    let mut running = lock_running(shared);
    publish(shared, &mut running, config, origin)
}

/// Publishes the running configuration with the nodes of the SRV cluster
/// `cluster` replaced by `nodes`. `None` when the running configuration no
/// longer has such a cluster.
pub fn replace_discovered_nodes(
    shared: &Arc<Shared>,
    cluster: &str,
    nodes: Vec<NodeConfig>,
    origin: &str,
) -> Option<Applied> {
    let mut running = lock_running(shared);
    let mut config = running.clone();
    let target = config
        .clusters
        .iter_mut()
        .find(|c| c.name == cluster && c.srv.is_some())?;
    target.nodes = nodes;
    Some(publish(shared, &mut running, config, origin))
}

/// Publishes the running configuration again (node mode overrides changed).
pub fn republish(shared: &Arc<Shared>, origin: &str) -> Applied {
    let mut running = lock_running(shared);
    let config = running.clone();
    publish(shared, &mut running, config, origin)
}

/// The running routing configuration: what the live table was built from
/// (with the configured node modes; see [`super::overrides`]).
pub fn running_config(shared: &Shared) -> Config {
    lock_running(shared).clone()
}

/// Builds and publishes a table from `config` (with the node mode
/// overrides on top) unless it routes like the live one. A table that gives
/// a database a cluster it did not have is held until that cluster has the
/// schema (see [`super::schema_first`]); it is reported as `Swapped` with
/// the version it is published as.
fn publish(shared: &Arc<Shared>, running: &mut Config, config: Config, origin: &str) -> Applied {
    if let Some(problem) = duplicate_node_name(&config) {
        return refuse(shared, origin, vec![format!("{origin}: {problem}")]);
    }
    let (effective, new) = shared.overrides.effective(shared, running, &config);
    if let Some(version) = shared.schema_first.held_version(&effective) {
        *running = config;
        return Applied::Swapped(version);
    }
    let superseded = shared.schema_first.supersede();
    let current = shared.routing.load();
    if same_routing(&current, &effective) {
        shared.overrides.published(shared, &config, new);
        *running = config;
        return Applied::Unchanged;
    }
    let version = current.version() + 1;
    let table =
        match RoutingTable::build(&effective, version, origin, Some(&current), &shared.monitor) {
            Ok(table) => table,
            Err(e) => {
                let refused = refuse(shared, origin, vec![format!("{origin}: {e}")]);
                if let Some(superseded) = superseded {
                    super::schema_first::hold_again(shared, &current, running, superseded);
                }
                return refused;
            }
        };
    let published = superseded.map(|s| s.published);
    let look = super::schema_first::may_add_targets(published.as_ref().unwrap_or(running), &config);
    if look && super::schema_first::can_hold() {
        let published = published.unwrap_or_else(|| running.clone());
        let version = super::schema_first::hold(shared, table, published, &effective, origin);
        shared.overrides.published(shared, &config, new);
        *running = config;
        return Applied::Swapped(version);
    }
    swap_in(shared, table, origin);
    shared.overrides.published(shared, &config, new);
    *running = config;
    Applied::Swapped(version)
}

/// Gives every SRV cluster of `candidate` the nodes `running` has for it,
/// when its `srv` settings did not change.
fn keep_discovered_nodes(running: &Config, candidate: &mut Config) {
    for cluster in &mut candidate.clusters {
        let Some(srv) = &cluster.srv else { continue };
        let old = running
            .clusters
            .iter()
            .find(|c| c.name == cluster.name && c.srv.as_ref().is_some_and(|o| o.name == srv.name));
        if let Some(old) = old {
            cluster.nodes = old.nodes.clone();
        }
    }
}

/// A node name used twice (a discovered name may meet a static one).
fn duplicate_node_name(config: &Config) -> Option<String> {
    let mut seen = std::collections::HashMap::new();
    for cluster in &config.clusters {
        for node in &cluster.nodes {
            if let Some(first) = seen.insert(node.name.as_str(), cluster.name.as_str()) {
                return Some(format!(
                    "node name {:?} of cluster {:?} is already used in cluster {first:?}",
                    node.name, cluster.name
                ));
            }
        }
    }
    None
}

fn refuse(shared: &Shared, origin: &str, problems: Vec<String>) -> Applied {
    tracing::warn!(source = %origin, problems = %problems.join("; "), "routing update refused; the last good table stays");
    let refusal = Refusal {
        at: SystemTime::now(),
        source: origin.to_string(),
        problems: problems.clone(),
    };
    shared.reloads.update(|s| {
        s.refused += 1;
        s.last_refused = Some(refusal);
    });
    shared.monitor.table_refused(origin, &problems);
    Applied::Refused(problems)
}

/// Whether `config`'s routing part is what `table` was built from.
fn same_routing(table: &RoutingTable, config: &Config) -> bool {
    table.built_from() == RoutingTable::fingerprint(config)
}

fn warn_about_fixed_sections(running: &Config, candidate: &Config, origin: &str) {
    let fixed = |c: &Config| {
        format!(
            "{:?}{:?}{:?}{:?}{:?}",
            c.server, c.write, c.health, c.buffer, c.limits
        )
    };
    if fixed(running) != fixed(candidate) {
        tracing::warn!(source = %origin, "[server], [write], [health], [buffer] and [limits] changes take effect after a restart");
    }
}
