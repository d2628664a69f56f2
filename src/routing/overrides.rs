//! Node mode overrides kept in Redis, and the routers' receipts for them.
//!
//! The control plane (recover-node, `[control] auto_recover`) can make a
//! node `write-only` for a while without touching the routing source: it
//! stores an override in Redis and every router that has `[routing]
//! redis_url` applies it on top of the table it builds, whatever the
//! table's source (file, SRV, Redis document). Routers acknowledge what
//! they applied, so a job can wait until every live router honours an
//! override before it relies on it.
//!
//! Redis layout (`P` is `[routing] key_prefix`):
//!
//! * `P:overrides` — hash, field `<cluster>/<node>`, value an [`Override`]
//!   as JSON; a field that does not parse is ignored (and logged by the
//!   reader), never fatal;
//! * `P:overrides:version` — integer, incremented with every change, in
//!   the same transaction;
//! * a change is announced on the routing exchange `P.routing` (the same
//!   fanout exchange as routing documents) with the body
//!   `overrides:<version>`; routers also re-read at every poll;
//! * `P:routers` — hash, field a router's id, value a [`Receipt`] as JSON:
//!   what that router has applied, refreshed at every poll;
//! * `P:recover:<cluster>/<node>` — the id of the recover-node job enqueued
//!   for a node that newly appeared (set with NX, so one job per node
//!   across routers; it expires after [`RECOVER_KEY_TTL_SECS`]).
//!
//! This module owns the names and the value formats; reading and writing
//! them is left to the router (`server`) and the control plane.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Config, NodeMode};

/// How long the per-node recover-job key lives.
pub const RECOVER_KEY_TTL_SECS: u64 = 24 * 3600;

/// The hash of overrides.
pub fn overrides_key(prefix: &str) -> String {
    format!("{prefix}:overrides")
}

/// The counter bumped with every change of [`overrides_key`].
pub fn overrides_version_key(prefix: &str) -> String {
    format!("{prefix}:overrides:version")
}

/// The hash of router receipts.
pub fn routers_key(prefix: &str) -> String {
    format!("{prefix}:routers")
}

/// The key that makes one recover-node job per node.
pub fn recover_key(prefix: &str, cluster: &str, node: &str) -> String {
    format!("{prefix}:recover:{}", field(cluster, node))
}

/// The field of a node in [`overrides_key`].
pub fn field(cluster: &str, node: &str) -> String {
    format!("{cluster}/{node}")
}

/// The body of a change notice on the routing exchange.
pub fn notice(version: u64) -> String {
    format!("{NOTICE_PREFIX}{version}")
}

const NOTICE_PREFIX: &str = "overrides:";

/// Whether `body`, a notice on the routing exchange, is about overrides
/// (`overrides:<version>`), and then its version (0 when it is not a
/// number: the overrides are read again all the same). `None` for any
/// other body (a routing document's version).
pub fn notice_version(body: &str) -> Option<u64> {
    let version = body.trim().strip_prefix(NOTICE_PREFIX)?;
    Some(version.trim().parse().unwrap_or(0))
}

/// One override: the mode a node has while it is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// `write-only` (the only mode the control plane sets so far), or any
    /// other node mode name.
    pub mode: String,
    /// Unix time in nanoseconds when it was set.
    pub since_ns: i64,
    /// Who set it and why, for `/status` and `admin status`.
    #[serde(default)]
    pub reason: String,
}

impl Override {
    /// A `write-only` override set now, for `reason`.
    pub fn write_only(reason: &str) -> Override {
        Override {
            mode: NodeMode::WriteOnly.as_str().to_string(),
            since_ns: crate::clock::unix_ns() as i64,
            reason: reason.to_string(),
        }
    }

    /// The value stored in [`overrides_key`].
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The mode, when it is a known one.
    pub fn node_mode(&self) -> Option<NodeMode> {
        parse_mode(&self.mode)
    }
}

/// A node mode from its config name.
pub fn parse_mode(text: &str) -> Option<NodeMode> {
    Some(match text {
        "read-write" => NodeMode::ReadWrite,
        "write-only" => NodeMode::WriteOnly,
        "read-only" => NodeMode::ReadOnly,
        "drain" => NodeMode::Drain,
        "off" => NodeMode::Off,
        _ => return None,
    })
}

/// What one router has applied, as it reports it in [`routers_key`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The routing document version of its live table (0: not from Redis).
    pub routing_version: u64,
    /// The overrides version it applied.
    pub overrides_version: u64,
    /// Unix ms of the report; a receipt older than three poll intervals
    /// belongs to a router that is gone.
    pub at_ms: u64,
}

impl Receipt {
    /// The value stored in [`routers_key`].
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Overrides by `(cluster, node)`.
pub type Overrides = BTreeMap<(String, String), Override>;

/// Replaces the mode of every node of `config` that `overrides` names with
/// the override's mode (when it is a known one). Returns the overrides
/// that name no node of `config`: they are ignored.
pub fn apply_to(config: &mut Config, overrides: &Overrides) -> Vec<(String, String)> {
    let mut used = std::collections::BTreeSet::new();
    for cluster in &mut config.clusters {
        for node in &mut cluster.nodes {
            let key = (cluster.name.clone(), node.name.clone());
            if let Some(mode) = overrides.get(&key).and_then(Override::node_mode) {
                node.mode = mode;
                used.insert(key);
            }
        }
    }
    overrides
        .keys()
        .filter(|key| !used.contains(*key))
        .cloned()
        .collect()
}

/// Parses the fields of [`overrides_key`]; malformed ones are returned
/// apart, as `(field, why)`.
pub fn parse_all(
    fields: impl IntoIterator<Item = (String, String)>,
) -> (Overrides, Vec<(String, String)>) {
    let mut good = BTreeMap::new();
    let mut bad = Vec::new();
    for (name, value) in fields {
        let Some((cluster, node)) = name.split_once('/') else {
            bad.push((name, "not <cluster>/<node>".to_string()));
            continue;
        };
        match serde_json::from_str::<Override>(&value) {
            Ok(o) if o.node_mode().is_some() => {
                good.insert((cluster.to_string(), node.to_string()), o);
            }
            Ok(o) => bad.push((name, format!("unknown mode {:?}", o.mode))),
            Err(e) => bad.push((name, e.to_string())),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_fields_are_set_apart() {
        let good = serde_json::to_string(&Override {
            mode: "write-only".into(),
            since_ns: 5,
            reason: "test".into(),
        })
        .unwrap();
        let (ok, bad) = parse_all([
            ("main/a".to_string(), good),
            ("nocluster".to_string(), "{}".to_string()),
            (
                "main/b".to_string(),
                "{\"mode\":\"fast\",\"since_ns\":1}".into(),
            ),
            ("main/c".to_string(), "not json".into()),
        ]);
        assert_eq!(ok.len(), 1);
        assert_eq!(
            ok[&("main".into(), "a".into())].node_mode(),
            Some(NodeMode::WriteOnly)
        );
        assert_eq!(bad.len(), 3);
        assert_eq!(recover_key("p", "c", "n"), "p:recover:c/n");
    }

    #[test]
    fn override_notices_are_told_from_document_versions() {
        assert_eq!(notice_version(&notice(12)), Some(12));
        assert_eq!(notice_version(" overrides:3\n"), Some(3));
        assert_eq!(notice_version("overrides:x"), Some(0));
        assert_eq!(notice_version("12"), None);
        assert_eq!(notice_version(""), None);
    }

    #[test]
    fn overrides_replace_the_modes_of_the_nodes_they_name() {
        let dir = std::env::temp_dir();
        let text = format!(
            "[buffer]\ndir = {:?}\n[routing]\ndefault_cluster = \"main\"\n\
             [[cluster]]\nname = \"main\"\nnodes = [{{ name = \"a\", url = \"http://h:1\" }}, \
             {{ name = \"b\", url = \"http://h:2\", mode = \"read-only\" }}]\n",
            dir.display().to_string()
        );
        let configured = Config::from_toml_str(&text, "test").unwrap();
        let mut config = configured.clone();
        let over = |mode: &str| Override {
            mode: mode.into(),
            since_ns: 1,
            reason: String::new(),
        };
        let overrides = Overrides::from([
            (("main".into(), "a".into()), over("write-only")),
            (("main".into(), "gone".into()), over("write-only")),
            (("other".into(), "b".into()), over("off")),
            (("main".into(), "b".into()), over("nonsense")),
        ]);
        let ignored = apply_to(&mut config, &overrides);
        let modes: Vec<NodeMode> = config.clusters[0].nodes.iter().map(|n| n.mode).collect();
        // an unknown mode leaves the configured one
        assert_eq!(modes, [NodeMode::WriteOnly, NodeMode::ReadOnly]);
        assert_eq!(
            ignored,
            [
                ("main".to_string(), "b".to_string()),
                ("main".into(), "gone".into()),
                ("other".into(), "b".into())
            ]
        );
        // no overrides: the configured modes
        let mut again = configured.clone();
        assert!(apply_to(&mut again, &Overrides::new()).is_empty());
        assert_eq!(again.clusters[0].nodes[0].mode, NodeMode::ReadWrite);
    }
}
