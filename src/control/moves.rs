//! Moves: data that lives on a cluster the routing table no longer gives
//! it to, and the `[[move]]` entries that keep it readable until it is
//! copied (SPEC section 8, `rebalance`).
//!
//! [`plan`] looks at what every cluster of a table holds (`SHOW
//! DATABASES`, `SHOW MEASUREMENTS` on one node of each) and lists, per
//! database and measurement, each cluster holding it that is not its owner
//! under the table's rules. `admin routes push` records these moves in the
//! document it stores, `admin rebalance --plan` prints them for a file, and
//! `admin rebalance` carries them out.
//!
//! The functions that edit a routing document ([`add`], [`set_state`],
//! [`remove`]) work on its TOML text; [`add`] appends, so the rest of the
//! text stays as written, while the other two rewrite the document from
//! its parsed form (comments are lost; the content is the same).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::config::glob::Glob;
use crate::config::{ClusterConfig, Config, MoveConfig, MoveState};
use crate::routing::rules::Rules;

use super::endpoint::{self, Endpoint};
use super::http::HttpClient;
use super::influx::Influx;
use super::pieces;
use super::schema;
use super::ControlError;

/// One measurement of one database that has to go from one cluster to another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Move {
    pub database: String,
    pub measurement: String,
    pub from: String,
    pub to: String,
}

impl Move {
    /// Whether the `[[move]]` entry `entry` is about exactly this move.
    pub fn is(&self, entry: &MoveConfig) -> bool {
        entry.from == self.from
            && entry.to == self.to
            && entry.database.is_match(&self.database)
            && entry.database.as_str() == literal(&self.database)
            && entry
                .measurement
                .as_ref()
                .is_some_and(|m| m.as_str() == literal(&self.measurement))
    }

    /// The `[[move]]` entry of the table that applies to this measurement
    /// (the first whose database and measurement match), if any.
    pub fn entry<'a>(&self, table: &'a Config) -> Option<&'a MoveConfig> {
        table.moves.iter().find(|m| {
            m.database.is_match(&self.database)
                && m.measurement
                    .as_ref()
                    .map_or(true, |g| g.is_match(&self.measurement))
        })
    }

    /// The `[[move]]` block for a routing document.
    pub fn toml(&self, state: MoveState) -> String {
        let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
        format!(
            "[[move]]\ndatabase = {}\nmeasurement = {}\nfrom = {}\nto = {}\nstate = {}\n",
            quoted(&literal(&self.database)),
            quoted(&literal(&self.measurement)),
            quoted(&self.from),
            quoted(&self.to),
            quoted(state.as_str()),
        )
    }
}

impl std::fmt::Display for Move {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{} from {} to {}",
            self.database, self.measurement, self.from, self.to
        )
    }
}

/// `name` as a glob that matches only it.
fn literal(name: &str) -> String {
    Glob::literal(name)
        .map(|g| g.as_str().to_string())
        .unwrap_or_default()
}

/// What one cluster holds: its name and, per database, its measurements.
#[derive(Debug, Clone)]
pub struct Holdings {
    pub cluster: String,
    pub databases: Vec<(String, Vec<String>)>,
}

/// The compiled rules of `table` and its cluster names.
fn owner_of(table: &Config) -> impl Fn(&str, &str) -> String + '_ {
    let names: Vec<&str> = table.clusters.iter().map(|c| c.name.as_str()).collect();
    let default = names
        .iter()
        .position(|n| *n == table.routing.default_cluster)
        .unwrap_or(0);
    let rules = Rules::compile(&table.routes, &names, default);
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    move |db, measurement| names[rules.cluster_for(db, measurement)].clone()
}

/// Reads what `cluster` holds of `databases` (every one but `_internal`
/// when empty) and measurements matching `glob`, from the first of its
/// nodes that answers.
pub async fn holdings(
    table: &Config,
    cluster: &ClusterConfig,
    databases: &[String],
    glob: Option<&Glob>,
) -> Result<Holdings, ControlError> {
    let node = reader(table, cluster).await?;
    let names = schema::database_names(&node).await?;
    let mut held = Vec::new();
    for db in names {
        let wanted = if databases.is_empty() {
            db != "_internal"
        } else {
            databases.contains(&db)
        };
        if !wanted {
            continue;
        }
        let measurements = pieces::measurements(&node, &db, glob).await?;
        if !measurements.is_empty() {
            held.push((db, measurements));
        }
    }
    Ok(Holdings {
        cluster: cluster.name.clone(),
        databases: held,
    })
}

/// A node of `cluster` that answers, read-enabled ones first.
pub async fn reader(table: &Config, cluster: &ClusterConfig) -> Result<Influx, ControlError> {
    let http = HttpClient::new().map_err(ControlError::Failed)?;
    let mut nodes = endpoint::cluster_nodes(cluster, table).await?;
    nodes.retain(|n| n.mode.accepts_writes() || n.mode.accepts_reads());
    nodes.sort_by_key(|n| !n.mode.accepts_reads());
    let mut errors = Vec::new();
    for node in &nodes {
        let server = Influx::new(endpoint::node_endpoint(cluster, node), http.clone());
        match schema::database_names(&server).await {
            Ok(_) => return Ok(server),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(ControlError::Failed(format!(
        "cannot read cluster {:?}: no node answers ({})",
        cluster.name,
        if errors.is_empty() {
            "it has no node".to_string()
        } else {
            errors.join("; ")
        }
    )))
}

/// Every node of `cluster` that takes writes, as endpoints.
pub async fn writers(table: &Config, cluster: &str) -> Result<Vec<Endpoint>, ControlError> {
    let cluster = endpoint::find_cluster(table, cluster)?;
    let nodes = endpoint::cluster_nodes(cluster, table).await?;
    Ok(nodes
        .iter()
        .filter(|n| n.mode.accepts_writes())
        .map(|n| endpoint::node_endpoint(cluster, n))
        .collect())
}

/// Every node of `cluster`, whatever its mode, as endpoints.
pub async fn all_nodes(table: &Config, cluster: &str) -> Result<Vec<Endpoint>, ControlError> {
    let cluster = endpoint::find_cluster(table, cluster)?;
    let nodes = endpoint::cluster_nodes(cluster, table).await?;
    Ok(nodes
        .iter()
        .map(|n| endpoint::node_endpoint(cluster, n))
        .collect())
}

/// The moves `table` implies for what its clusters hold now: each
/// measurement on a cluster that is not its owner under the table's rules.
pub async fn plan(
    table: &Config,
    databases: &[String],
    glob: Option<&Glob>,
) -> Result<Vec<Move>, ControlError> {
    let mut moves = BTreeSet::new();
    for cluster in &table.clusters {
        moves.extend(plan_cluster(table, cluster, databases, glob).await?);
    }
    Ok(moves.into_iter().collect())
}

/// The moves of [`plan`] away from one `cluster` (of `table` or not).
pub async fn plan_cluster(
    table: &Config,
    cluster: &ClusterConfig,
    databases: &[String],
    glob: Option<&Glob>,
) -> Result<Vec<Move>, ControlError> {
    let owner = owner_of(table);
    let held = holdings(table, cluster, databases, glob).await?;
    let mut moves = Vec::new();
    for (db, measurements) in &held.databases {
        for m in measurements {
            let to = owner(db, m);
            if to != cluster.name {
                moves.push(Move {
                    database: db.clone(),
                    measurement: m.clone(),
                    from: cluster.name.clone(),
                    to,
                });
            }
        }
    }
    Ok(moves)
}

/// `document` with a `[[move]]` appended for each of `moves` that it does
/// not list yet, in state `copying`, or in the state `previous` (the
/// table it replaces) had for it; `None` when it lists them all.
pub fn add(
    document: &str,
    table: &Config,
    moves: &[Move],
    previous: Option<&Config>,
) -> Option<String> {
    let missing: Vec<&Move> = moves
        .iter()
        .filter(|m| !table.moves.iter().any(|entry| m.is(entry)))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut text = document.trim_end().to_string();
    text.push_str(
        "\n\n# Recorded by influxdb-router admin: data still held by a cluster the rules no\n\
         # longer give it to; reads use `from` until `admin rebalance` has moved it.\n",
    );
    for m in missing {
        let state = previous
            .and_then(|p| p.moves.iter().find(|e| m.is(e)))
            .map_or(MoveState::Copying, |e| e.state);
        let _ = write!(text, "{}", m.toml(state));
    }
    Some(text)
}

/// `document` with the `[[move]]` of `target` set to `state`; `None` when
/// it already is (or the document does not list it).
pub fn set_state(
    document: &str,
    target: &Move,
    state: MoveState,
) -> Result<Option<String>, String> {
    edit_moves(document, |entries| {
        let mut changed = false;
        for entry in entries.iter_mut() {
            if entry_is(entry, target)
                && entry.get("state").and_then(|s| s.as_str()) != Some(state.as_str())
            {
                entry.insert("state".into(), toml::Value::String(state.as_str().into()));
                changed = true;
            }
        }
        changed
    })
}

/// `document` without the `[[move]]` of `target`; `None` when it does not
/// list it.
pub fn remove(document: &str, target: &Move) -> Result<Option<String>, String> {
    edit_moves(document, |entries| {
        let before = entries.len();
        entries.retain(|entry| !entry_is(entry, target));
        entries.len() != before
    })
}

/// Whether a raw `[[move]]` table is the entry of `target`.
fn entry_is(entry: &toml::Table, target: &Move) -> bool {
    let get = |key: &str| entry.get(key).and_then(|v| v.as_str());
    get("database") == Some(&literal(&target.database))
        && get("measurement") == Some(&literal(&target.measurement))
        && get("from") == Some(&target.from)
        && get("to") == Some(&target.to)
}

/// Applies `change` to the `[[move]]` tables of `document`; the rewritten
/// document when `change` says it changed something.
fn edit_moves(
    document: &str,
    change: impl FnOnce(&mut Vec<toml::Table>) -> bool,
) -> Result<Option<String>, String> {
    let mut parsed: toml::Table =
        toml::from_str(document).map_err(|e| format!("the routing document is not TOML: {e}"))?;
    let mut entries: Vec<toml::Table> = match parsed.remove("move") {
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| match v {
                toml::Value::Table(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !change(&mut entries) {
        return Ok(None);
    }
    if !entries.is_empty() {
        parsed.insert(
            "move".into(),
            toml::Value::Array(entries.into_iter().map(toml::Value::Table).collect()),
        );
    }
    toml::to_string(&parsed)
        .map(Some)
        .map_err(|e| format!("cannot write the routing document: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
# the operator's comment
[routing]
default_cluster = "a"
[[cluster]]
name = "a"
nodes = [{ name = "a1", url = "http://127.0.0.1:1" }]
[[cluster]]
name = "b"
nodes = [{ name = "b1", url = "http://127.0.0.1:2" }]
[[route]]
database = "big"
cluster = "b"
"#;

    fn cpu() -> Move {
        Move {
            database: "big".into(),
            measurement: "c*u \"x\"".into(),
            from: "a".into(),
            to: "b".into(),
        }
    }

    fn parse(text: &str) -> Config {
        Config::from_toml_str(text, "doc").unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn moves_are_added_once_then_marked_done_then_removed() {
        let table = parse(DOC);
        let added = add(DOC, &table, &[cpu()], None).unwrap();
        assert!(added.starts_with("\n# the operator's comment"), "{added}");
        let table = parse(&added);
        assert_eq!(table.moves.len(), 1);
        assert!(cpu().is(&table.moves[0]));
        assert_eq!(cpu().entry(&table), Some(&table.moves[0]));
        assert_eq!(table.moves[0].state, MoveState::Copying);
        // the glob of a name with `*` matches that name only
        let g = table.moves[0].measurement.as_ref().unwrap();
        assert!(g.is_match("c*u \"x\"") && !g.is_match("cpu \"x\""));
        assert_eq!(add(&added, &table, &[cpu()], None), None);

        let done = set_state(&added, &cpu(), MoveState::Done).unwrap().unwrap();
        let table = parse(&done);
        assert_eq!(table.moves[0].state, MoveState::Done);
        assert_eq!(table.routes.len(), 1);
        assert_eq!(set_state(&done, &cpu(), MoveState::Done).unwrap(), None);

        let gone = remove(&done, &cpu()).unwrap().unwrap();
        let table = parse(&gone);
        assert!(table.moves.is_empty());
        assert_eq!(table.clusters.len(), 2);
        assert_eq!(remove(&gone, &cpu()).unwrap(), None);
    }

    #[test]
    fn the_owner_follows_the_rules_of_the_table() {
        let table = parse(DOC);
        let owner = owner_of(&table);
        assert_eq!(owner("big", "cpu"), "b");
        assert_eq!(owner("small", "cpu"), "a");
    }
}
