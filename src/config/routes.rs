//! `[[route]]` tables: which databases and measurements go to which cluster.
//!
//! A rule has optional `database` and `measurement` globs and exactly one
//! target: `cluster = "name"`, or `shard = ["a", "b", …]` (at least two
//! different clusters) with `shard_key = "measurement"` (the default and, for
//! now, the only key). Every cluster named must be a `[[cluster]]`. Each
//! mistake is its own problem, under keys like `route[1].shard[0]`.
//!
//! `[[move]]` entries (data on its way between clusters) are checked here
//! too: a `database` (name or glob), an optional `measurement` glob, `from`
//! and `to` naming two different clusters, and `state` `copying` (the
//! default) or `done`.

use super::error::Problems;
use super::raw::{join, table_into, RawMove, RawRoute};
use super::{MoveConfig, MoveState, RouteConfig, RouteTarget, ShardKey};
use crate::config::glob::Glob;

/// Checks every `[[route]]` against `names`, the name of every cluster
/// written (valid or not, so a broken cluster is not reported twice).
pub(crate) fn routes(
    tables: Option<Vec<toml::Table>>,
    names: &[String],
    problems: &mut Problems,
) -> Vec<RouteConfig> {
    let mut routes = Vec::new();
    for (i, table) in tables.unwrap_or_default().into_iter().enumerate() {
        let path = format!("route[{i}]");
        let raw: RawRoute = table_into(table, &path, problems);
        let mut check = RouteCheck {
            path: &path,
            names,
            problems,
        };
        routes.extend(check.route(raw));
    }
    routes
}

/// Checks every `[[move]]` against the cluster `names`.
pub(crate) fn moves(
    tables: Option<Vec<toml::Table>>,
    names: &[String],
    problems: &mut Problems,
) -> Vec<MoveConfig> {
    let mut moves = Vec::new();
    for (i, table) in tables.unwrap_or_default().into_iter().enumerate() {
        let path = format!("move[{i}]");
        let raw: RawMove = table_into(table, &path, problems);
        let mut check = RouteCheck {
            path: &path,
            names,
            problems,
        };
        moves.extend(check.movement(raw));
    }
    moves
}

/// Checks one rule, reporting problems under its `path`.
struct RouteCheck<'a> {
    path: &'a str,
    names: &'a [String],
    problems: &'a mut Problems,
}

impl RouteCheck<'_> {
    fn route(&mut self, raw: RawRoute) -> Option<RouteConfig> {
        let database = self.glob("database", raw.database);
        let measurement = self.glob("measurement", raw.measurement);
        let key = self.shard_key(raw.shard_key, raw.cluster.is_some() && raw.shard.is_none());
        let target = self.target(raw.cluster, raw.shard, key.unwrap_or(ShardKey::Measurement));
        key?;
        Some(RouteConfig {
            database: database.ok()?,
            measurement: measurement.ok()?,
            target: target?,
        })
    }

    fn movement(&mut self, raw: RawMove) -> Option<MoveConfig> {
        let database = match raw.database {
            Some(db) => self.glob("database", Some(db)).ok().flatten(),
            None => {
                self.fail("database", "required: the database whose data moves");
                None
            }
        };
        let measurement = self.glob("measurement", raw.measurement);
        let from = self.required_cluster("from", raw.from);
        let to = self.required_cluster("to", raw.to);
        let state = match raw.state.as_deref() {
            None | Some("copying") => Some(MoveState::Copying),
            Some("done") => Some(MoveState::Done),
            Some(other) => {
                self.fail(
                    "state",
                    format!("expected \"copying\" or \"done\", got {other:?}"),
                );
                None
            }
        };
        if let (Some(from), Some(to)) = (&from, &to) {
            if from == to {
                self.fail(
                    "to",
                    format!("expected a cluster other than from ({from:?})"),
                );
                return None;
            }
        }
        Some(MoveConfig {
            database: database?,
            measurement: measurement.ok()?,
            from: from?,
            to: to?,
            state: state?,
        })
    }

    fn required_cluster(&mut self, key: &str, value: Option<String>) -> Option<String> {
        match value {
            Some(name) => self.cluster_name(key, name),
            None => {
                self.fail(key, "required: the name of a cluster");
                None
            }
        }
    }

    fn fail(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(&join(self.path, key), message);
    }

    /// An optional glob; `Err` when it was given but is not valid.
    fn glob(&mut self, key: &str, value: Option<String>) -> Result<Option<Glob>, ()> {
        match value.as_deref().map(Glob::new) {
            None => Ok(None),
            Some(Ok(glob)) => Ok(Some(glob)),
            Some(Err(message)) => {
                self.fail(key, message);
                Err(())
            }
        }
    }

    /// `shard_key`, which only applies to `shard` rules.
    fn shard_key(&mut self, value: Option<String>, cluster_rule: bool) -> Option<ShardKey> {
        match value.as_deref() {
            None => Some(ShardKey::Measurement),
            Some(_) if cluster_rule => {
                let message = "only applies to shard rules; remove it, or use shard = [...] instead of cluster";
                self.fail("shard_key", message);
                None
            }
            Some("measurement") => Some(ShardKey::Measurement),
            Some(other) => {
                let message =
                    format!("expected \"measurement\" (the only shard key so far), got {other:?}");
                self.fail("shard_key", message);
                None
            }
        }
    }

    fn target(
        &mut self,
        cluster: Option<String>,
        shard: Option<Vec<String>>,
        key: ShardKey,
    ) -> Option<RouteTarget> {
        match (cluster, shard) {
            (Some(name), None) => self.cluster_name("cluster", name).map(RouteTarget::Cluster),
            (None, Some(list)) => self
                .shard(list)
                .map(|clusters| RouteTarget::Shard { clusters, key }),
            (Some(_), Some(_)) => {
                let message =
                    "expected either cluster or shard, not both: a rule has exactly one target";
                self.problems.push(self.path, message);
                None
            }
            (None, None) => {
                let (c, s) = (join(self.path, "cluster"), join(self.path, "shard"));
                if !self.problems.mentions(&c) && !self.problems.mentions(&s) {
                    let message = "needs a target: cluster = \"name\", or shard = [\"a\", \"b\"]";
                    self.problems.push(self.path, message);
                }
                None
            }
        }
    }

    /// At least two different known clusters; each mistake is reported once.
    fn shard(&mut self, list: Vec<String>) -> Option<Vec<String>> {
        let distinct = list
            .iter()
            .enumerate()
            .filter(|(j, name)| !list[..*j].contains(name))
            .count();
        if distinct < 2 {
            let message = format!("expected at least two different clusters, got {list:?}");
            self.fail("shard", message);
            return None;
        }
        let mut ok = true;
        for (j, name) in list.iter().enumerate() {
            let key = format!("shard[{j}]");
            if let Some(first) = list[..j].iter().position(|n| n == name) {
                self.fail(
                    &key,
                    format!("duplicate cluster {name:?}, already listed as shard[{first}]"),
                );
                ok = false;
            } else {
                ok &= self.cluster_name(&key, name.clone()).is_some();
            }
        }
        ok.then_some(list)
    }

    /// `name` when it names a `[[cluster]]`.
    fn cluster_name(&mut self, key: &str, name: String) -> Option<String> {
        if self.names.is_empty() || self.names.contains(&name) {
            return Some(name);
        }
        let listed: Vec<String> = self.names.iter().map(|n| format!("{n:?}")).collect();
        let message = format!(
            "expected the name of a cluster ({}), got {name:?}",
            listed.join(", ")
        );
        self.fail(key, message);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["main".to_owned(), "k8s".to_owned(), "east".to_owned()]
    }

    /// Checks one `[[route]]` given as the body of a TOML table.
    fn check(body: &str) -> Result<RouteConfig, Vec<(String, String)>> {
        let table: toml::Table = toml::from_str(body).unwrap();
        let mut problems = Problems::new("t.toml");
        let mut routes = routes(Some(vec![table]), &names(), &mut problems);
        if problems.is_empty() {
            assert_eq!(routes.len(), 1);
            return Ok(routes.remove(0));
        }
        let err = problems.into_error();
        Err(err
            .problems()
            .iter()
            .map(|p| (p.key.clone(), p.message.clone()))
            .collect())
    }

    fn keys(body: &str) -> Vec<String> {
        check(body).unwrap_err().into_iter().map(|p| p.0).collect()
    }

    #[test]
    fn a_cluster_rule_keeps_its_globs_and_target() {
        let route =
            check("database = \"telemetry*\"\nmeasurement = \"cpu?\"\ncluster = \"k8s\"").unwrap();
        assert_eq!(route.database.unwrap().as_str(), "telemetry*");
        assert_eq!(route.measurement.unwrap().as_str(), "cpu?");
        assert_eq!(route.target, RouteTarget::Cluster("k8s".into()));
    }

    #[test]
    fn omitted_globs_match_everything_and_shard_key_defaults_to_measurement() {
        let route = check("shard = [\"main\", \"k8s\"]").unwrap();
        assert_eq!((route.database, route.measurement), (None, None));
        let clusters = vec!["main".to_owned(), "k8s".to_owned()];
        let key = ShardKey::Measurement;
        assert_eq!(route.target, RouteTarget::Shard { clusters, key });
    }

    #[test]
    fn a_rule_needs_exactly_one_target() {
        let none = check("database = \"x\"").unwrap_err();
        assert_eq!(none[0].0, "route[0]");
        assert!(none[0].1.starts_with("needs a target"), "{none:?}");
        let both = check("cluster = \"main\"\nshard = [\"main\", \"k8s\"]").unwrap_err();
        assert_eq!(both.len(), 1);
        assert!(both[0].1.contains("not both"), "{both:?}");
    }

    #[test]
    fn unknown_clusters_are_named_with_the_known_ones() {
        let problems = check("cluster = \"mian\"").unwrap_err();
        assert_eq!(
            problems,
            [(
                "route[0].cluster".to_owned(),
                "expected the name of a cluster (\"main\", \"k8s\", \"east\"), got \"mian\""
                    .to_owned()
            )]
        );
        assert_eq!(
            keys("shard = [\"x\", \"main\", \"y\"]"),
            ["route[0].shard[0]", "route[0].shard[2]"]
        );
    }

    #[test]
    fn a_shard_needs_two_different_clusters_and_no_repeats() {
        for body in [
            "shard = []",
            "shard = [\"main\"]",
            "shard = [\"main\", \"main\"]",
        ] {
            let problems = check(body).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].0, "route[0].shard");
            assert!(problems[0]
                .1
                .starts_with("expected at least two different clusters"));
        }
        let problems = check("shard = [\"main\", \"k8s\", \"main\"]").unwrap_err();
        assert_eq!(problems[0].0, "route[0].shard[2]");
        assert_eq!(
            problems[0].1,
            "duplicate cluster \"main\", already listed as shard[0]"
        );
    }

    #[test]
    fn bad_globs_are_reported_with_the_pattern_quoted() {
        let problems =
            check("database = \"db[\"\nmeasurement = \"\"\ncluster = \"main\"").unwrap_err();
        assert_eq!(problems[0].0, "route[0].database");
        assert!(
            problems[0]
                .1
                .starts_with("bad glob \"db[\": unclosed \"[\""),
            "{problems:?}"
        );
        assert_eq!(problems[1].0, "route[0].measurement");
    }

    #[test]
    fn shard_key_must_be_measurement_and_only_on_shard_rules() {
        let problems = check("shard = [\"main\", \"k8s\"]\nshard_key = \"host\"").unwrap_err();
        assert_eq!(problems[0].0, "route[0].shard_key");
        assert_eq!(
            problems[0].1,
            "expected \"measurement\" (the only shard key so far), got \"host\""
        );
        let problems = check("cluster = \"main\"\nshard_key = \"measurement\"").unwrap_err();
        assert!(
            problems[0].1.starts_with("only applies to shard rules"),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_without_a_second_complaint() {
        assert_eq!(
            keys("cluster = \"main\"\nretention = \"autogen\""),
            ["route[0].retention"]
        );
        assert_eq!(keys("shard = \"main\""), ["route[0].shard"]);
        assert_eq!(keys("cluster = 1"), ["route[0].cluster"]);
    }

    #[test]
    fn every_problem_of_every_rule_is_reported() {
        let tables: Vec<toml::Table> = [
            "database = \"a[\"\ncluster = \"nope\"",
            "cluster = \"main\"",
            "shard = [\"main\", \"gone\"]\nshard_key = \"tag\"",
        ]
        .iter()
        .map(|t| toml::from_str(t).unwrap())
        .collect();
        let mut problems = Problems::new("t.toml");
        let kept = routes(Some(tables), &names(), &mut problems);
        assert_eq!(kept.len(), 1);
        let keys: Vec<String> = problems
            .into_error()
            .problems()
            .iter()
            .map(|p| p.key.clone())
            .collect();
        assert_eq!(
            keys,
            [
                "route[0].database",
                "route[0].cluster",
                "route[2].shard_key",
                "route[2].shard[1]"
            ]
        );
    }
}
