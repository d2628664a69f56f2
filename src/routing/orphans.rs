//! Queues left on disk by nodes that are no longer in the routing table.
//!
//! They are never deleted by the router: a node that comes back under the
//! same cluster and name picks its queue up again. Until then they are
//! reported in `/status` and logged at start.

use std::fs;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// One queue directory without a configured node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub cluster: String,
    pub node: String,
    pub dir: PathBuf,
    pub bytes: u64,
}

/// Every `<buffer.dir>/<cluster>/<node>/` whose node is not in `config`.
pub fn find(config: &Config) -> Vec<Orphan> {
    let mut orphans = Vec::new();
    for cluster_dir in subdirs(&config.buffer.dir) {
        let cluster = file_name(&cluster_dir);
        for node_dir in subdirs(&cluster_dir) {
            let node = file_name(&node_dir);
            if !configured(config, &cluster, &node) {
                let bytes = dir_bytes(&node_dir);
                tracing::warn!(%cluster, %node, dir = %node_dir.display(), bytes, "queue of a node that is not configured; kept");
                orphans.push(Orphan {
                    cluster: cluster.clone(),
                    node,
                    dir: node_dir,
                    bytes,
                });
            }
        }
    }
    orphans
}

fn configured(config: &Config, cluster: &str, node: &str) -> bool {
    config
        .clusters
        .iter()
        .any(|c| c.name == cluster && c.nodes.iter().any(|n| n.name == node))
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_dirs_of_unconfigured_nodes_are_found_and_configured_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[buffer]\ndir = {:?}\n[[cluster]]\nname = \"main\"\nnodes = [{{ name = \"a\", url = \"http://127.0.0.1:1\" }}]\n",
            dir.path().display().to_string()
        );
        let config = Config::from_toml_str(&text, "t.toml").unwrap();
        for node in ["main/a", "main/gone", "old/x"] {
            fs::create_dir_all(dir.path().join(node)).unwrap();
        }
        fs::write(dir.path().join("main/gone/00001.seg"), b"12345").unwrap();
        let found = find(&config);
        let names: Vec<(&str, &str, u64)> = found
            .iter()
            .map(|o| (o.cluster.as_str(), o.node.as_str(), o.bytes))
            .collect();
        assert_eq!(names, vec![("main", "gone", 5), ("old", "x", 0)]);
    }
}
