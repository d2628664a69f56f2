//! Which clusters a query concerns, from the statements' `FROM` and `ON`.
//!
//! Reads ask the clusters owning the measurements they name (every cluster
//! that may hold the database for regexes and `SHOW`s without `FROM`, all of
//! them for `SHOW DATABASES`). Admin statements go to the same clusters,
//! except those about databases, users and privileges, which every cluster
//! must know. An empty answer means: the database's one cluster.
//!
//! A measurement being moved (`[[move]]`) is read from the cluster that
//! holds all of it; statements that change it reach both clusters of the
//! move.

use std::collections::BTreeSet;

use crate::protocol::influxql::sources::{show_kind, ShowKind};
use crate::protocol::influxql::{sources, tokens, MeasurementRef, Statement};
use crate::routing::RoutingTable;

/// The clusters a read must ask.
pub fn read_clusters(table: &RoutingTable, db: &str, statements: &[Statement<'_>]) -> Vec<usize> {
    if table.clusters().len() < 2 {
        return Vec::new();
    }
    let mut clusters = BTreeSet::new();
    for statement in statements {
        if show_kind(statement.text) == Some(ShowKind::Databases) {
            clusters.extend(0..table.clusters().len());
        } else {
            add_owners(table, db, statement.text, Purpose::Read, &mut clusters);
        }
    }
    clusters.into_iter().collect()
}

/// The clusters an admin statement must reach.
pub fn admin_clusters(table: &RoutingTable, db: &str, statements: &[Statement<'_>]) -> Vec<usize> {
    let everywhere = (0..table.clusters().len()).collect();
    if table.clusters().len() < 2 {
        return everywhere;
    }
    let mut clusters = BTreeSet::new();
    for statement in statements {
        if about_every_cluster(statement.text) {
            return everywhere;
        }
        add_owners(table, db, statement.text, Purpose::Change, &mut clusters);
    }
    clusters.into_iter().collect()
}

/// Why [`add_owners`] is asked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Read,
    Change,
}

/// Databases, users and privileges exist on every cluster.
fn about_every_cluster(statement: &str) -> bool {
    let words: Vec<_> = tokens(statement).take(2).collect();
    let is = |i: usize, keyword: &str| words.get(i).is_some_and(|t| t.is_keyword(keyword));
    (is(0, "CREATE") || is(0, "DROP")) && (is(1, "DATABASE") || is(1, "USER"))
        || is(0, "GRANT")
        || is(0, "REVOKE")
        || is(0, "SET") && is(1, "PASSWORD")
}

/// Adds the clusters owning what `statement` names in `FROM`, or every
/// cluster that may hold its database when it names nothing or a regex.
fn add_owners(
    table: &RoutingTable,
    db: &str,
    statement: &str,
    purpose: Purpose,
    clusters: &mut BTreeSet<usize>,
) {
    let found = sources(statement);
    let db = found.on.as_deref().unwrap_or(db);
    if found.from.is_empty() {
        clusters.extend(table.clusters_for_db(db));
    }
    for source in &found.from {
        let db = source.db.as_deref().unwrap_or(db);
        match &source.measurement {
            MeasurementRef::Name(name) if purpose == Purpose::Read => {
                clusters.insert(table.read_cluster_for(db, name));
            }
            MeasurementRef::Name(name) => {
                clusters.insert(table.cluster_index_for(db, name));
                if let Some((from, to)) = table.move_clusters(db, name) {
                    clusters.extend([from, to]);
                }
            }
            MeasurementRef::Regex(_) => clusters.extend(table.clusters_for_db(db)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::protocol::influxql::parse;

    fn table(dir: &std::path::Path) -> RoutingTable {
        let text = format!(
            "[buffer]\ndir = {:?}\n[routing]\ndefault_cluster = \"c1\"\n\
             [[cluster]]\nname = \"c1\"\nnodes = [{{ name = \"a\", url = \"http://127.0.0.1:1\" }}]\n\
             [[cluster]]\nname = \"c2\"\nnodes = [{{ name = \"b\", url = \"http://127.0.0.1:2\" }}]\n\
             [[route]]\ndatabase = \"m\"\nmeasurement = \"cpu*\"\ncluster = \"c2\"\n",
            dir.display().to_string()
        );
        let config = Config::from_toml_str(&text, "t.toml").unwrap();
        RoutingTable::build(
            &config,
            1,
            "test",
            None,
            &crate::monitor::Monitor::new(None),
        )
        .unwrap()
    }

    #[test]
    fn admin_statements_reach_the_clusters_that_hold_what_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(dir.path());
        assert_eq!(
            admin_clusters(&table, "m", &parse("DROP MEASUREMENT cpu_load")),
            vec![1]
        );
        assert_eq!(
            admin_clusters(&table, "m", &parse("DELETE FROM mem WHERE time < 0")),
            vec![0]
        );
        assert_eq!(
            admin_clusters(&table, "m", &parse("DROP SERIES WHERE host = 'a'")),
            vec![0, 1]
        );
        assert_eq!(
            admin_clusters(&table, "other", &parse("DROP MEASUREMENT cpu")),
            vec![0]
        );
        for everywhere in [
            "CREATE DATABASE x",
            "drop user u",
            "GRANT ALL TO u",
            "SET PASSWORD FOR u = 'p'",
        ] {
            assert_eq!(
                admin_clusters(&table, "m", &parse(everywhere)),
                vec![0, 1],
                "{everywhere}"
            );
        }
    }

    #[test]
    fn reads_ask_the_owners_of_their_measurements() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(dir.path());
        assert_eq!(
            read_clusters(&table, "m", &parse("SELECT * FROM cpu")),
            vec![1]
        );
        assert_eq!(
            read_clusters(&table, "m", &parse("SELECT * FROM cpu, mem")),
            vec![0, 1]
        );
        assert_eq!(
            read_clusters(&table, "m", &parse("SHOW MEASUREMENTS")),
            vec![0, 1]
        );
        assert_eq!(
            read_clusters(&table, "x", &parse("SHOW DATABASES")),
            vec![0, 1]
        );
        assert_eq!(
            read_clusters(&table, "x", &parse("SELECT * FROM cpu")),
            vec![0]
        );
    }
}
