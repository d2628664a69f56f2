//! Compiled `[[route]]` rules and the lookups the request path makes.
//!
//! Rules are compiled once per routing table: globs are already parsed (with
//! fast paths for `*`, exact names and prefixes), a glob matching everything
//! becomes "no condition", and targets are cluster indexes (into
//! [`super::RoutingTable::clusters`]). Lookups walk the rules in order, the
//! first match wins, and they never allocate (except [`Rules::clusters_for_db`]
//! and [`Rules::for_db`], which return lists).
//!
//! Semantics, for a database `db`:
//! * a line of measurement `m` goes to the target of the first rule whose
//!   `database` matches `db` and whose `measurement` matches `m`, else to the
//!   default cluster;
//! * a rule without a measurement condition matches every line of `db`, so
//!   no later rule (nor the default) is ever reached for `db`;
//! * the write body of `db` needs splitting by measurement only when the
//!   rules that can match `db` lead to more than one cluster.
//!
//! Moves (`[[move]]`, data on its way from cluster X to cluster Y) change
//! the answers for what they match, the first matching move deciding:
//! while one is `copying`, a line goes to its owner under the rules and to
//! X as well ([`WriteTo::also`]), and reads of it are answered by X, which
//! holds all of it; once `done`, reads go to the owner and writes no longer
//! to X. Both X and Y stay among the clusters that may hold the database.

use crate::config::{MoveConfig, MoveState, RouteConfig, RouteTarget};

use super::hash::Rendezvous;
use crate::config::glob::Glob;

/// The rules of one routing table and its default cluster.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Box<[Rule]>,
    default: usize,
    moves: Box<[Move]>,
}

/// A compiled `[[move]]`.
#[derive(Debug, Clone)]
struct Move {
    /// `None`: every database.
    database: Option<Glob>,
    /// `None`: every measurement.
    measurement: Option<Glob>,
    from: usize,
    to: usize,
    copying: bool,
}

/// Where the writes of one measurement go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteTo {
    /// The cluster the rules give it.
    pub owner: usize,
    /// The cluster it is moving away from, while it is being copied (never
    /// the owner itself).
    pub also: Option<usize>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// `None`: every database.
    database: Option<Glob>,
    /// `None`: every measurement.
    measurement: Option<Glob>,
    target: Target,
}

#[derive(Debug, Clone)]
enum Target {
    Cluster(usize),
    /// `first` is the first cluster listed, the answer of
    /// [`Rules::cluster_for_db`] for a database sharded as a whole.
    Shard {
        first: usize,
        rendezvous: Rendezvous,
    },
}

/// The rules that can apply to one database, for routing many lines of it.
#[derive(Debug)]
pub struct DbRules<'a> {
    rules: Vec<&'a Rule>,
    default: usize,
    moves: Vec<&'a Move>,
}

impl Rules {
    /// Compiles `routes` for the clusters called `names` (index = cluster
    /// index). A validated config names only existing clusters; a rule that
    /// names another one (a hand-built config) is left out and logged.
    pub fn compile(routes: &[RouteConfig], names: &[&str], default: usize) -> Rules {
        let index = |name: &str| names.iter().position(|n| *n == name);
        let mut rules = Vec::with_capacity(routes.len());
        for (i, route) in routes.iter().enumerate() {
            let target = match &route.target {
                RouteTarget::Cluster(name) => index(name).map(Target::Cluster),
                RouteTarget::Shard { clusters, key: _ } => shard_target(clusters, &index, names),
            };
            let Some(target) = target else {
                tracing::error!(
                    rule = i,
                    "route names a cluster that does not exist; rule ignored"
                );
                continue;
            };
            rules.push(Rule {
                database: condition(&route.database),
                measurement: condition(&route.measurement),
                target,
            });
        }
        Rules {
            rules: rules.into(),
            default,
            moves: Box::default(),
        }
    }

    /// Adds the `[[move]]`s, with their clusters named as in [`Rules::compile`].
    pub fn with_moves(mut self, moves: &[MoveConfig], names: &[&str]) -> Rules {
        let index = |name: &str| names.iter().position(|n| *n == name);
        let mut compiled = Vec::with_capacity(moves.len());
        for (i, m) in moves.iter().enumerate() {
            let (Some(from), Some(to)) = (index(&m.from), index(&m.to)) else {
                tracing::error!(
                    r#move = i,
                    "move names a cluster that does not exist; move ignored"
                );
                continue;
            };
            compiled.push(Move {
                database: condition(&Some(m.database.clone())),
                measurement: condition(&m.measurement),
                from,
                to,
                copying: m.state == MoveState::Copying,
            });
        }
        self.moves = compiled.into();
        self
    }

    /// Whether any `[[move]]` is in the table.
    pub fn has_moves(&self) -> bool {
        !self.moves.is_empty()
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything goes to the default cluster).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The cluster of a line of measurement `measurement` in `db`.
    pub fn cluster_for(&self, db: &str, measurement: &str) -> usize {
        for rule in self.matching(db) {
            if rule.measurement_matches(measurement) {
                return rule.target.pick(measurement);
            }
        }
        self.default
    }

    /// Whether the writes of `db` go to more than one cluster depending on
    /// the measurement; when false, all go to [`Rules::cluster_for_db`].
    pub fn needs_measurement(&self, db: &str) -> bool {
        if self.moves.iter().any(|m| m.copying && m.applies_to(db)) {
            return true;
        }
        let mut only: Option<usize> = None;
        let mut same = |c: usize| *only.get_or_insert(c) == c;
        for rule in self.matching(db) {
            match (&rule.measurement, &rule.target) {
                (_, Target::Shard { .. }) => return true,
                (Some(_), Target::Cluster(c)) if !same(*c) => return true,
                (Some(_), Target::Cluster(_)) => {}
                (None, Target::Cluster(c)) => return !same(*c),
            }
        }
        !same(self.default)
    }

    /// The cluster of `db` as a whole: the target of the first rule for
    /// `db` without a measurement condition (its first listed cluster if it
    /// shards), else the default. This is where lines go that no
    /// measurement rule matches.
    pub fn cluster_for_db(&self, db: &str) -> usize {
        self.matching(db)
            .find(|rule| rule.measurement.is_none())
            .map_or(self.default, |rule| match &rule.target {
                Target::Cluster(c) => *c,
                Target::Shard { first, .. } => *first,
            })
    }

    /// Every cluster that may hold data of `db`, ascending: the targets of
    /// the rules that can match `db`, and the default cluster unless a rule
    /// for all of `db`'s measurements comes first.
    pub fn clusters_for_db(&self, db: &str) -> Vec<usize> {
        let mut clusters = Vec::new();
        let mut complete = false;
        for rule in self.matching(db) {
            match &rule.target {
                Target::Cluster(c) => clusters.push(*c),
                Target::Shard { rendezvous, .. } => clusters.extend(rendezvous.clusters()),
            }
            if rule.measurement.is_none() {
                complete = true;
                break;
            }
        }
        if !complete {
            clusters.push(self.default);
        }
        for m in self.moves_of(db) {
            clusters.extend([m.from, m.to]);
        }
        clusters.sort_unstable();
        clusters.dedup();
        clusters
    }

    /// The rules that can apply to `db`, for looking up many measurements.
    pub fn for_db(&self, db: &str) -> DbRules<'_> {
        let mut rules = Vec::new();
        for rule in self.rules.iter().filter(|rule| rule.database_matches(db)) {
            rules.push(rule);
            if rule.measurement.is_none() {
                break;
            }
        }
        DbRules {
            rules,
            default: self.default,
            moves: self.moves_of(db),
        }
    }

    /// Where writes of `measurement` in `db` go.
    pub fn write_to(&self, db: &str, measurement: &str) -> WriteTo {
        let owner = self.cluster_for(db, measurement);
        WriteTo {
            owner,
            also: also(self.move_for(db, measurement), owner),
        }
    }

    /// The cluster that answers reads of `measurement` in `db`: the one it
    /// moves from while it is being copied, else its owner.
    pub fn read_cluster_for(&self, db: &str, measurement: &str) -> usize {
        match self.move_for(db, measurement) {
            Some(m) if m.copying => m.from,
            _ => self.cluster_for(db, measurement),
        }
    }

    /// The clusters of the move of `measurement` in `db` (from, to), if
    /// one matches: where statements that change its data must go too.
    pub fn move_clusters(&self, db: &str, measurement: &str) -> Option<(usize, usize)> {
        self.move_for(db, measurement).map(|m| (m.from, m.to))
    }

    /// Whether a series of `measurement` in `db` that `cluster` sent
    /// belongs in a read merged across clusters: not when a move concerns
    /// `cluster` and another cluster answers for the measurement now.
    pub fn series_belongs(&self, db: &str, cluster: usize, measurement: &str) -> bool {
        match self.move_for(db, measurement) {
            Some(m) if cluster == m.from || cluster == m.to => {
                cluster == self.read_cluster_for(db, measurement)
            }
            _ => true,
        }
    }

    /// The moves that can apply to `db`, in order.
    fn moves_of(&self, db: &str) -> Vec<&Move> {
        self.moves.iter().filter(|m| m.applies_to(db)).collect()
    }

    fn move_for(&self, db: &str, measurement: &str) -> Option<&Move> {
        self.moves
            .iter()
            .find(|m| m.applies_to(db) && m.covers(measurement))
    }

    fn matching<'a>(&'a self, db: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |rule| rule.database_matches(db))
    }
}

impl DbRules<'_> {
    /// The cluster of a line of measurement `measurement`; the same answer
    /// as [`Rules::cluster_for`] for this database.
    pub fn cluster_for(&self, measurement: &str) -> usize {
        self.rules
            .iter()
            .find(|rule| rule.measurement_matches(measurement))
            .map_or(self.default, |rule| rule.target.pick(measurement))
    }

    /// Where writes of `measurement` go; the same answer as [`Rules::write_to`].
    pub fn write_to(&self, measurement: &str) -> WriteTo {
        let owner = self.cluster_for(measurement);
        let found = self.moves.iter().copied().find(|m| m.covers(measurement));
        WriteTo {
            owner,
            also: also(found, owner),
        }
    }

    /// The cluster answering reads of `measurement`; the same answer as
    /// [`Rules::read_cluster_for`].
    pub fn read_cluster_for(&self, measurement: &str) -> usize {
        match self.moves.iter().find(|m| m.covers(measurement)) {
            Some(m) if m.copying => m.from,
            _ => self.cluster_for(measurement),
        }
    }
}

impl Move {
    fn applies_to(&self, db: &str) -> bool {
        self.database.as_ref().map_or(true, |g| g.is_match(db))
    }

    fn covers(&self, measurement: &str) -> bool {
        self.measurement
            .as_ref()
            .map_or(true, |g| g.is_match(measurement))
    }
}

/// The second cluster a write goes to while `found` is being copied.
fn also(found: Option<&Move>, owner: usize) -> Option<usize> {
    found
        .filter(|m| m.copying && m.from != owner)
        .map(|m| m.from)
}

impl Rule {
    fn database_matches(&self, db: &str) -> bool {
        self.database.as_ref().map_or(true, |g| g.is_match(db))
    }

    fn measurement_matches(&self, measurement: &str) -> bool {
        self.measurement
            .as_ref()
            .map_or(true, |g| g.is_match(measurement))
    }
}

impl Target {
    fn pick(&self, measurement: &str) -> usize {
        match self {
            Target::Cluster(c) => *c,
            Target::Shard { rendezvous, .. } => rendezvous.pick(measurement),
        }
    }
}

/// A glob that matches everything is no condition at all.
fn condition(glob: &Option<Glob>) -> Option<Glob> {
    glob.as_ref().filter(|g| !g.matches_everything()).cloned()
}

fn shard_target(
    clusters: &[String],
    index: &impl Fn(&str) -> Option<usize>,
    names: &[&str],
) -> Option<Target> {
    let indexes: Option<Vec<usize>> = clusters.iter().map(|name| index(name)).collect();
    let indexes = indexes?;
    let rendezvous = Rendezvous::new(indexes.iter().map(|&i| (i, names[i])));
    Some(Target::Shard {
        first: *indexes.first()?,
        rendezvous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const CLUSTERS: &str = r#"
[routing]
default_cluster = "main"
[[cluster]]
name = "main"
nodes = [{ name = "a", url = "http://a" }]
[[cluster]]
name = "k8s"
nodes = [{ name = "b", url = "http://b" }]
[[cluster]]
name = "east"
nodes = [{ name = "c", url = "http://c" }]
"#;

    const MAIN: usize = 0;
    const K8S: usize = 1;
    const EAST: usize = 2;

    fn rules(routes: &str) -> Rules {
        let text = format!("{CLUSTERS}{routes}");
        let config = Config::from_toml_str(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
        Rules::compile(&config.routes, &names, MAIN).with_moves(&config.moves, &names)
    }

    #[test]
    fn a_measurement_being_moved_is_written_to_both_and_read_from_where_it_was() {
        let rules = rules(
            r#"
[[route]]
database = "big"
cluster = "k8s"
[[move]]
database = "big"
measurement = "cpu"
from = "main"
to = "k8s"
[[move]]
database = "big"
measurement = "mem"
from = "east"
to = "k8s"
state = "done"
"#,
        );
        assert_eq!(
            rules.write_to("big", "cpu"),
            WriteTo {
                owner: K8S,
                also: Some(MAIN)
            }
        );
        assert_eq!(rules.read_cluster_for("big", "cpu"), MAIN);
        assert_eq!(
            rules.write_to("big", "mem"),
            WriteTo {
                owner: K8S,
                also: None
            }
        );
        assert_eq!(rules.read_cluster_for("big", "mem"), K8S);
        assert_eq!(rules.read_cluster_for("big", "disk"), K8S);
        assert!(rules.needs_measurement("big"));
        assert!(!rules.needs_measurement("other"));
        assert_eq!(rules.clusters_for_db("big"), [MAIN, K8S, EAST]);
        let db = rules.for_db("big");
        assert_eq!(db.write_to("cpu"), rules.write_to("big", "cpu"));
        assert_eq!(db.read_cluster_for("cpu"), MAIN);
        assert_eq!(db.read_cluster_for("mem"), K8S);
        // merged reads keep each moved measurement's series from one cluster
        assert!(rules.series_belongs("big", MAIN, "cpu"));
        assert!(!rules.series_belongs("big", K8S, "cpu"));
        assert!(rules.series_belongs("big", K8S, "mem"));
        assert!(!rules.series_belongs("big", EAST, "mem"));
        assert!(rules.series_belongs("big", EAST, "disk"));
        assert_eq!(rules.move_clusters("big", "mem"), Some((EAST, K8S)));
        assert_eq!(rules.move_clusters("big", "disk"), None);
    }

    #[test]
    fn moves_are_checked_like_routes() {
        let text = format!(
            "{CLUSTERS}[[move]]\nfrom = \"main\"\nto = \"main\"\nstate = \"half\"\n\
             [[move]]\ndatabase = \"d\"\nfrom = \"nowhere\"\nto = \"k8s\"\nspeed = 1\n"
        );
        let error = Config::from_toml_str(&text, "t.toml").unwrap_err();
        let keys: Vec<&str> = error.problems().iter().map(|p| p.key.as_str()).collect();
        for key in [
            "move[0].database",
            "move[0].state",
            "move[0].to",
            "move[1].from",
            "move[1].speed",
        ] {
            assert!(keys.contains(&key), "{key} not in {keys:?}");
        }
    }

    #[test]
    fn without_rules_everything_goes_to_the_default_cluster() {
        let rules = rules("");
        assert!(rules.is_empty());
        assert_eq!(rules.cluster_for("any", "cpu"), MAIN);
        assert_eq!(rules.cluster_for_db("any"), MAIN);
        assert!(!rules.needs_measurement("any"));
        assert_eq!(rules.clusters_for_db("any"), [MAIN]);
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rules = rules(
            r#"
[[route]]
database = "telemetry*"
measurement = "cpu*"
cluster = "k8s"
[[route]]
database = "telemetry*"
cluster = "east"
[[route]]
database = "telemetry_eu"
cluster = "main"
"#,
        );
        assert_eq!(rules.len(), 3);
        assert_eq!(rules.cluster_for("telemetry_eu", "cpu_load"), K8S);
        assert_eq!(rules.cluster_for("telemetry_eu", "mem"), EAST);
        assert_eq!(rules.cluster_for("other", "cpu"), MAIN);
    }

    #[test]
    fn database_only_rules_route_a_whole_database_without_the_measurement() {
        let rules = rules("[[route]]\ndatabase = \"logs\"\ncluster = \"k8s\"");
        assert!(!rules.needs_measurement("logs"));
        assert_eq!(rules.cluster_for_db("logs"), K8S);
        assert_eq!(rules.cluster_for("logs", "anything"), K8S);
        assert_eq!(rules.clusters_for_db("logs"), [K8S]);
        assert_eq!(rules.cluster_for_db("logs2"), MAIN);
        assert_eq!(rules.clusters_for_db("logs2"), [MAIN]);
    }

    #[test]
    fn measurement_rules_make_a_database_need_the_measurement() {
        let rules =
            rules("[[route]]\ndatabase = \"metrics\"\nmeasurement = \"cpu*\"\ncluster = \"k8s\"");
        assert!(rules.needs_measurement("metrics"));
        assert!(!rules.needs_measurement("other"));
        assert_eq!(rules.cluster_for("metrics", "cpu"), K8S);
        assert_eq!(rules.cluster_for("metrics", "mem"), MAIN);
        assert_eq!(rules.cluster_for_db("metrics"), MAIN);
        assert_eq!(rules.clusters_for_db("metrics"), [MAIN, K8S]);
    }

    #[test]
    fn measurement_rules_that_all_lead_to_one_cluster_need_no_measurement() {
        let rules = rules(
            r#"
[[route]]
measurement = "cpu*"
cluster = "main"
[[route]]
database = "logs"
measurement = "syslog"
cluster = "k8s"
[[route]]
database = "logs"
cluster = "k8s"
"#,
        );
        assert!(!rules.needs_measurement("metrics"));
        assert!(rules.needs_measurement("logs"));
        assert_eq!(rules.cluster_for("logs", "cpu"), MAIN);
        assert_eq!(rules.cluster_for("logs", "app"), K8S);
        assert_eq!(rules.clusters_for_db("logs"), [MAIN, K8S]);
    }

    #[test]
    fn a_star_glob_is_no_condition() {
        let rules = rules("[[route]]\ndatabase = \"*\"\nmeasurement = \"*\"\ncluster = \"east\"");
        assert!(!rules.needs_measurement("x"));
        assert_eq!(rules.cluster_for_db("x"), EAST);
        assert_eq!(rules.clusters_for_db("x"), [EAST]);
    }

    #[test]
    fn a_sharded_database_spreads_measurements_over_its_clusters() {
        let rules = rules("[[route]]\ndatabase = \"big\"\nshard = [\"k8s\", \"east\"]");
        assert!(rules.needs_measurement("big"));
        assert_eq!(rules.clusters_for_db("big"), [K8S, EAST]);
        assert_eq!(rules.cluster_for_db("big"), K8S);
        let mut seen = [0; 3];
        for i in 0..1_000 {
            let m = format!("m{i}");
            let c = rules.cluster_for("big", &m);
            assert_eq!(rules.cluster_for("big", &m), c, "stable");
            seen[c] += 1;
        }
        assert_eq!(seen[MAIN], 0);
        assert!(seen[K8S] > 400 && seen[EAST] > 400, "{seen:?}");
    }

    #[test]
    fn a_shard_agrees_with_rendezvous_over_cluster_names() {
        let rules = rules("[[route]]\nshard = [\"east\", \"main\"]");
        let direct = Rendezvous::new([(MAIN, "main"), (EAST, "east")]);
        for m in ["cpu", "mem", "disk", "net", "swap"] {
            assert_eq!(rules.cluster_for("db", m), direct.pick(m));
        }
    }

    #[test]
    fn rules_for_one_database_answer_like_the_full_lookup() {
        let rules = rules(
            r#"
[[route]]
database = "a*"
measurement = "cpu?"
cluster = "east"
[[route]]
database = "b*"
cluster = "k8s"
[[route]]
database = "ab"
shard = ["main", "k8s", "east"]
[[route]]
measurement = "x*"
cluster = "k8s"
"#,
        );
        for db in ["ab", "ac", "bb", "zz"] {
            let for_db = rules.for_db(db);
            for m in ["cpu1", "cpu", "mem", "x1", "disk", "net"] {
                assert_eq!(for_db.cluster_for(m), rules.cluster_for(db, m), "{db} {m}");
            }
        }
        assert_eq!(rules.for_db("ab").rules.len(), 2);
        assert_eq!(rules.clusters_for_db("ac"), [MAIN, K8S, EAST]);
        assert_eq!(rules.clusters_for_db("ab"), [MAIN, K8S, EAST]);
        assert_eq!(rules.clusters_for_db("zz"), [MAIN, K8S]);
    }

    #[test]
    fn rules_naming_unknown_clusters_are_left_out() {
        let config = Config::from_toml_str(
            &format!("{CLUSTERS}[[route]]\ndatabase = \"x\"\ncluster = \"k8s\""),
            "t.toml",
        )
        .unwrap();
        let rules = Rules::compile(&config.routes, &["main"], MAIN);
        assert!(rules.is_empty());
        assert_eq!(rules.cluster_for("x", "m"), MAIN);
    }
}
