//! Tests for `[[route]]` through the whole pipeline, and for the commented
//! route examples of `config.toml.example`.

use super::*;
use crate::config::{RouteTarget, ShardKey};

const TWO_CLUSTERS: &str = r#"
[routing]
default_cluster = "main"
[[cluster]]
name = "main"
nodes = [{ name = "a", url = "http://a" }]
[[cluster]]
name = "k8s"
nodes = [{ name = "b", url = "http://b" }]
"#;

fn with_clusters(routes: &str) -> Result<Config, ConfigError> {
    parse(&format!("{TWO_CLUSTERS}{routes}"))
}

#[test]
fn routes_are_kept_in_file_order() {
    let text = "[[route]]\ndatabase = \"b*\"\ncluster = \"k8s\"\n\
                [[route]]\nshard = [\"k8s\", \"main\"]\n";
    let config = with_clusters(text).unwrap();
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.routes[0].database.as_ref().unwrap().as_str(), "b*");
    let clusters = vec!["k8s".to_owned(), "main".to_owned()];
    let key = ShardKey::Measurement;
    assert_eq!(
        config.routes[1].target,
        RouteTarget::Shard { clusters, key }
    );
}

#[test]
fn a_config_without_routes_has_none() {
    assert!(with_cluster("").unwrap().routes.is_empty());
    assert!(Config::embedded_default().routes.is_empty());
}

#[test]
fn routes_do_not_change_how_default_cluster_is_chosen() {
    let text = "[[route]]\ndatabase = \"x\"\ncluster = \"main\"";
    assert_eq!(with_cluster(text).unwrap().routing.default_cluster, "main");
    let text = TWO_CLUSTERS.replace("default_cluster = \"main\"", "");
    let (key, _) = only_problem(parse(&format!("{text}[[route]]\ncluster = \"k8s\"")));
    assert_eq!(key, "routing.default_cluster");
}

#[test]
fn a_route_to_a_broken_cluster_is_not_reported_twice() {
    let text = "[[cluster]]\nname = \"main\"\nnodes = []\n[[route]]\ncluster = \"main\"";
    let (key, _) = only_problem(parse(text));
    assert_eq!(key, "cluster[0].nodes");
}

#[test]
fn route_problems_come_after_the_others_with_their_index() {
    let text =
        "[server]\nbind = \"x\"\n[[route]]\ncluster = \"k8s\"\n[[route]]\ncluster = \"nope\"";
    let keys: Vec<_> = problems(with_clusters(text))
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(keys, ["server.bind", "route[1].cluster"]);
}

/// `config.toml.example` with its commented `[[route]]` examples enabled
/// and the second cluster they assume.
fn example_with_routes() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
    let example = std::fs::read_to_string(path).unwrap();
    let start = example
        .find("\n# [[route]]\n")
        .expect("a commented [[route]] example");
    let routes: Vec<&str> = example[start..]
        .lines()
        .map(|line| {
            line.strip_prefix("# ")
                .unwrap_or(line.trim_start_matches('#'))
        })
        .collect();
    let k8s = "[[cluster]]\nname = \"k8s\"\nnodes = [{ name = \"k\", url = \"http://k:8086\" }]";
    format!("{example}\n{}\n{k8s}\n", routes.join("\n"))
}

#[test]
fn the_route_examples_in_config_toml_example_are_valid() {
    let config = parse(&example_with_routes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.routes[0].target, RouteTarget::Cluster("k8s".into()));
    assert!(matches!(config.routes[1].target, RouteTarget::Shard { .. }));
}
