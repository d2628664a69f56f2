//! The routing table: clusters, their nodes, the default cluster and the
//! compiled `[[route]]` rules (see [`super::rules`]).
//!
//! A table is built once from a validated configuration and never changed;
//! a new table replaces it as a whole (see [`super::live`]). Nodes are
//! `Arc`s so that a later table can keep the same node (and its health and
//! counters) when only the topology around it changes. The table also holds
//! the HTTP clients its nodes send through ([`Clients`]), handed on to the
//! next table so that connection pools survive a reload.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{ClusterConfig, Config, FsyncPolicy, MoveConfig, NodeConfig, NodeMode, OnFull};
use crate::monitor::Monitor;
use crate::node::client::{Clients, ClusterClients};
use crate::node::Node;
use crate::queue::memfs::MemFs;
use crate::queue::{Queue, QueueConfig, QueueError};
use crate::tls::TlsError;

use super::rules::{DbRules, Rules, WriteTo};

/// One cluster: a name and its nodes, in config order.
#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    pub nodes: Vec<Arc<Node>>,
    /// The cluster's `read_url`: asked first for reads, while it answers.
    pub read_via: Option<ReadVia>,
}

/// A cluster's `read_url` (a Service in front of its nodes), as a node that
/// only ever reads: it has no queue on disk and is not health-checked;
/// after a failure it is left alone for a while and the router picks nodes.
#[derive(Debug)]
pub struct ReadVia {
    pub node: Arc<Node>,
    /// Unix ms before which it is not asked again.
    down_until_ms: std::sync::atomic::AtomicU64,
}

/// How long a failed `read_url` is left alone.
const READ_VIA_BACKOFF_MS: u64 = 5_000;

impl ReadVia {
    /// Whether to ask it now.
    pub fn usable(&self) -> bool {
        self.down_until_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            <= crate::clock::unix_ms()
    }

    /// It failed before its first byte: leave it alone for a while.
    pub fn failed(&self, error: &str) {
        self.node.note_error(error);
        self.down_until_ms.store(
            crate::clock::unix_ms() + READ_VIA_BACKOFF_MS,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl Cluster {
    /// Nodes that take writes (read-write and write-only).
    pub fn write_nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.nodes.iter().filter(|n| n.mode().accepts_writes())
    }

    /// Nodes that take reads, healthy ones first, each group by fewest in-flight requests.
    pub fn read_candidates(&self) -> Vec<Arc<Node>> {
        let mut nodes: Vec<Arc<Node>> = self
            .nodes
            .iter()
            .filter(|n| n.mode().accepts_reads())
            .cloned()
            .collect();
        nodes.sort_by_key(|n| (!n.is_healthy(), n.in_flight()));
        nodes
    }
}

/// Where a table came from, for `/status`.
#[derive(Debug, Clone)]
pub struct TableSource {
    pub description: String,
    pub loaded_at: SystemTime,
}

/// Why a routing table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot open a node queue: {0}")]
    Queue(#[from] QueueError),
    #[error("cannot set up TLS towards the nodes of cluster {cluster:?}: {error}")]
    Tls {
        cluster: String,
        error: Box<TlsError>,
    },
}

/// An immutable routing snapshot.
#[derive(Debug)]
pub struct RoutingTable {
    version: u64,
    /// What the table was built from (see [`RoutingTable::fingerprint`]).
    built_from: String,
    source: TableSource,
    default_cluster: usize,
    clusters: Vec<Cluster>,
    rules: Rules,
    /// The `[[move]]`s as configured, for `/status`.
    moves: Vec<MoveConfig>,
    clients: Clients,
}

impl RoutingTable {
    /// Builds a table from a validated config, reusing nodes from `previous`
    /// where name, cluster, URL, mode and TLS client are unchanged (and a
    /// node's queue whenever name and cluster are), opening the queues of new
    /// nodes and reading the `ca_file` of clusters with `https://` nodes.
    /// New nodes get their metric handles from `monitor`.
    pub fn build(
        config: &Config,
        version: u64,
        source: &str,
        previous: Option<&RoutingTable>,
        monitor: &Monitor,
    ) -> Result<RoutingTable, BuildError> {
        let reusable = previous
            .map(RoutingTable::nodes_by_name)
            .unwrap_or_default();
        let old_clients = previous.map(|p| &p.clients);
        let mut clients = Clients::after(old_clients);
        clients.pin(config);
        let mut clusters = Vec::with_capacity(config.clusters.len());
        for cluster in &config.clusters {
            let cluster_clients =
                clients
                    .for_cluster(cluster, old_clients)
                    .map_err(|error| BuildError::Tls {
                        cluster: cluster.name.clone(),
                        error: Box::new(error),
                    })?;
            let mut nodes = Vec::with_capacity(cluster.nodes.len());
            for node in &cluster.nodes {
                let old = reusable
                    .get(node.name.as_str())
                    .filter(|old| old.cluster() == cluster.name);
                let queue = match old {
                    Some(old) => old.queue().clone(),
                    None => open_queue(config, &cluster.name, &node.name)?,
                };
                let fresh = Node::new(
                    cluster,
                    node,
                    queue,
                    Box::new(monitor.node(&cluster.name, &node.name)),
                    cluster_clients.for_node(node),
                );
                nodes.push(match old {
                    Some(old) if same_node(old, &fresh) => Arc::clone(old),
                    _ => fresh,
                });
            }
            let read_via = match &cluster.read_url {
                Some(url) => Some(read_via(cluster, url, previous, monitor, &cluster_clients)?),
                None => None,
            };
            clusters.push(Cluster {
                name: cluster.name.clone(),
                nodes,
                read_via,
            });
        }
        let default_cluster = clusters
            .iter()
            .position(|c| c.name == config.routing.default_cluster)
            .unwrap_or(0);
        let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        let rules = Rules::compile(&config.routes, &names, default_cluster)
            .with_moves(&config.moves, &names);
        let source = TableSource {
            description: source.to_string(),
            loaded_at: SystemTime::now(),
        };
        Ok(RoutingTable {
            version,
            built_from: RoutingTable::fingerprint(config),
            source,
            default_cluster,
            clusters,
            rules,
            moves: config.moves.clone(),
            clients,
        })
    }

    /// The routing part of a config (default cluster, clusters, routes), as
    /// text: two configs with the same fingerprint route the same way.
    pub fn fingerprint(config: &Config) -> String {
        format!(
            "{:?}|{:?}|{:?}|{:?}",
            config.routing.default_cluster, config.clusters, config.routes, config.moves
        )
    }

    /// The fingerprint of the config this table was built from.
    pub fn built_from(&self) -> &str {
        &self.built_from
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn source(&self) -> &TableSource {
        &self.source
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    pub fn default_cluster(&self) -> &Cluster {
        &self.clusters[self.default_cluster]
    }

    /// The compiled `[[route]]` rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Whether the cluster of a write to `db` depends on the measurement.
    /// When false, the write body can be forwarded untouched to
    /// [`RoutingTable::cluster_for`]`(db)`; when true, it must be split with
    /// [`RoutingTable::cluster_index_for`] (or [`RoutingTable::rules_for_db`]).
    pub fn needs_measurement(&self, db: &str) -> bool {
        self.rules.needs_measurement(db)
    }

    /// The cluster (index into [`RoutingTable::clusters`]) for a write or
    /// read of `measurement` (unescaped name) in `db`.
    pub fn cluster_index_for(&self, db: &str, measurement: &str) -> usize {
        self.rules.cluster_for(db, measurement)
    }

    /// The cluster of `db` as a whole: the target of the first rule for `db`
    /// without a measurement condition (the first listed cluster of a shard),
    /// else the default cluster. When [`RoutingTable::needs_measurement`] is
    /// false this is the one cluster for `db`; otherwise it is where lines go
    /// that no measurement rule matches.
    /// The index of [`RoutingTable::cluster_for`] in [`RoutingTable::clusters`].
    pub fn cluster_index_for_db(&self, db: &str) -> usize {
        self.rules.cluster_for_db(db)
    }

    pub fn cluster_for(&self, db: &str) -> &Cluster {
        &self.clusters[self.rules.cluster_for_db(db)]
    }

    /// Every cluster (indexes, ascending) that may hold data of `db`, for
    /// administrative statements on it and for reads that span clusters.
    pub fn clusters_for_db(&self, db: &str) -> Vec<usize> {
        self.rules.clusters_for_db(db)
    }

    /// The rules that can apply to `db`, for routing many lines of it
    /// without matching the database again for each.
    pub fn rules_for_db(&self, db: &str) -> DbRules<'_> {
        self.rules.for_db(db)
    }

    /// Where writes of `measurement` in `db` go: its owner, and the
    /// cluster it moves from while a `[[move]]` of it is being copied.
    pub fn write_to(&self, db: &str, measurement: &str) -> WriteTo {
        self.rules.write_to(db, measurement)
    }

    /// The cluster answering reads of `measurement` in `db` (the one it
    /// moves from while it is being copied, else its owner).
    pub fn read_cluster_for(&self, db: &str, measurement: &str) -> usize {
        self.rules.read_cluster_for(db, measurement)
    }

    /// The clusters (from, to) of a `[[move]]` of `measurement` in `db`.
    pub fn move_clusters(&self, db: &str, measurement: &str) -> Option<(usize, usize)> {
        self.rules.move_clusters(db, measurement)
    }

    /// Whether a series of `measurement` that `cluster` sent belongs in a
    /// read of `db` merged across clusters (see [`Rules::series_belongs`]).
    pub fn series_belongs(&self, db: &str, cluster: usize, measurement: &str) -> bool {
        self.rules.series_belongs(db, cluster, measurement)
    }

    /// The `[[move]]`s in force, as configured.
    pub fn moves(&self) -> &[MoveConfig] {
        &self.moves
    }

    /// Every node of every cluster.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.clusters.iter().flat_map(|c| c.nodes.iter())
    }

    fn nodes_by_name(&self) -> HashMap<&str, &Arc<Node>> {
        self.nodes().map(|n| (n.name(), n)).collect()
    }
}

/// Where the queue of `node` in `cluster` lives.
pub fn queue_dir(config: &Config, cluster: &str, node: &str) -> PathBuf {
    config.buffer.dir.join(cluster).join(node)
}

fn open_queue(config: &Config, cluster: &str, node: &str) -> Result<Queue, QueueError> {
    let buffer = &config.buffer;
    let queue_config = QueueConfig::new(buffer.max_size_per_node, buffer.on_full, buffer.fsync);
    Queue::open(&queue_dir(config, cluster, node), queue_config)
}

/// The node of a cluster's `read_url`: kept from `previous` when unchanged,
/// else new, with its (never used) queue in memory.
fn read_via(
    cluster: &ClusterConfig,
    url: &http::Uri,
    previous: Option<&RoutingTable>,
    monitor: &Monitor,
    clients: &ClusterClients,
) -> Result<ReadVia, BuildError> {
    let config = NodeConfig {
        name: "@read_url".into(),
        url: url.clone(),
        mode: NodeMode::ReadOnly,
        addrs: Vec::new(),
    };
    let old = previous
        .and_then(|p| p.clusters.iter().find(|c| c.name == cluster.name))
        .and_then(|c| c.read_via.as_ref())
        .map(|via| Arc::clone(&via.node));
    let queue = match &old {
        Some(old) => old.queue().clone(),
        None => {
            let dir = PathBuf::from(format!("/memory/read_url/{}/{}", cluster.name, url));
            let queue_config = QueueConfig::new(1 << 20, OnFull::Reject, FsyncPolicy::Never);
            Queue::open_with(&dir, queue_config, Arc::new(MemFs::default()))?
        }
    };
    let fresh = Node::new(
        cluster,
        &config,
        queue,
        Box::new(monitor.node(&cluster.name, "@read_url")),
        clients.for_node(&config),
    );
    let node = match old {
        Some(old) if same_node(&old, &fresh) => old,
        _ => fresh,
    };
    Ok(ReadVia {
        node,
        down_until_ms: Default::default(),
    })
}

fn same_node(a: &Node, b: &Node) -> bool {
    a.cluster() == b.cluster()
        && a.base_url() == b.base_url()
        && a.mode() == b.mode()
        && a.addrs() == b.addrs()
        && a.client().same(b.client())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeClient;

    #[test]
    fn lookups_follow_the_routes_of_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
[buffer]
dir = {:?}
[routing]
default_cluster = "main"
[[cluster]]
name = "main"
nodes = [{{ name = "a", url = "http://127.0.0.1:1" }}]
[[cluster]]
name = "k8s"
nodes = [{{ name = "b", url = "http://127.0.0.1:2" }}]
[[route]]
database = "logs*"
cluster = "k8s"
[[route]]
database = "metrics"
measurement = "cpu*"
cluster = "k8s"
"#,
            dir.path().display().to_string()
        );
        let config = Config::from_toml_str(&text, "t.toml").unwrap();
        let monitor = Monitor::new(None);
        let table = RoutingTable::build(&config, 1, "test", None, &monitor).unwrap();
        let name = |i: usize| table.clusters()[i].name.as_str();
        assert_eq!(table.default_cluster().name, "main");
        assert_eq!(table.cluster_for("logs_eu").name, "k8s");
        assert!(!table.needs_measurement("logs_eu"));
        assert!(table.needs_measurement("metrics"));
        assert_eq!(name(table.cluster_index_for("metrics", "cpu_load")), "k8s");
        assert_eq!(name(table.cluster_index_for("metrics", "mem")), "main");
        assert_eq!(table.cluster_for("metrics").name, "main");
        assert_eq!(table.clusters_for_db("metrics"), [0, 1]);
        assert_eq!(
            name(table.rules_for_db("metrics").cluster_for("cpu")),
            "k8s"
        );
        assert_eq!(table.rules().len(), 2);
    }

    /// A config with an `http://` node and an `https://` node whose cluster
    /// trusts `ca_file`.
    fn mixed(dir: &std::path::Path, ca_file: &std::path::Path) -> Config {
        let text = format!(
            r#"
[buffer]
dir = {:?}
[[cluster]]
name = "main"
ca_file = {:?}
nodes = [
  {{ name = "plain", url = "http://127.0.0.1:1" }},
  {{ name = "secure", url = "https://127.0.0.1:2" }},
]
"#,
            dir.display().to_string(),
            ca_file.display().to_string()
        );
        Config::from_toml_str(&text, "t.toml").unwrap()
    }

    fn write_ca(path: &std::path::Path) {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        std::fs::write(path, ca.cert.pem()).unwrap();
    }

    #[test]
    fn nodes_keep_their_clients_across_tables_until_the_ca_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        write_ca(&ca);
        let config = mixed(dir.path(), &ca);
        let first = RoutingTable::build(
            &config,
            1,
            "test",
            None,
            &crate::monitor::Monitor::new(None),
        )
        .unwrap();
        let node = |table: &RoutingTable, i: usize| table.clusters()[0].nodes[i].clone();
        assert!(matches!(node(&first, 0).client(), NodeClient::Plain(_)));
        assert!(matches!(node(&first, 1).client(), NodeClient::Tls(_)));

        let second = RoutingTable::build(
            &config,
            2,
            "test",
            Some(&first),
            &crate::monitor::Monitor::new(None),
        )
        .unwrap();
        assert!(Arc::ptr_eq(&node(&first, 0), &node(&second, 0)));
        assert!(Arc::ptr_eq(&node(&first, 1), &node(&second, 1)));

        write_ca(&ca);
        let third = RoutingTable::build(
            &config,
            3,
            "test",
            Some(&second),
            &crate::monitor::Monitor::new(None),
        )
        .unwrap();
        assert!(Arc::ptr_eq(&node(&second, 0), &node(&third, 0)));
        assert!(
            !Arc::ptr_eq(&node(&second, 1), &node(&third, 1)),
            "a new CA means a new client and a new node"
        );
        assert!(!node(&second, 1).client().same(node(&third, 1).client()));

        std::fs::remove_file(&ca).unwrap();
        let error = RoutingTable::build(
            &config,
            4,
            "test",
            Some(&third),
            &crate::monitor::Monitor::new(None),
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with(
                "cannot set up TLS towards the nodes of cluster \"main\": cannot read ca_file"
            ),
            "{error}"
        );
    }
}
