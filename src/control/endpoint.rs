//! SRC and DST of the data commands: a node URL
//! (`http://[user:pass@]host:port`, `https://` too) or a `CLUSTER/NODE`
//! name, or (where a command writes) a `CLUSTER` name meaning every
//! write-enabled node of it, resolved through the routing table in force:
//! the Redis document with `[routing] source = "redis"`, else the
//! configuration file. Nodes named through the table use their cluster's
//! `username`/`password`; a URL carries its own.

use crate::config::{ClusterConfig, Config, NodeConfig, NodeMode, RoutingSource};
use crate::routing::source::{dns, redis as store};

use super::ControlError;

/// One InfluxDB server a command talks to.
#[derive(Clone)]
pub struct Endpoint {
    /// How messages name it: `cluster/node`, or the URL without credentials.
    pub label: String,
    /// `scheme://host:port`, no trailing slash.
    pub base: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("label", &self.label)
            .field("base", &self.base)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The `Authorization` header value, when there are credentials.
    pub fn authorization(&self) -> Option<String> {
        let user = self.user.as_deref()?;
        let pass = self.password.as_deref().unwrap_or("");
        Some(format!(
            "Basic {}",
            crate::node::base64(format!("{user}:{pass}").as_bytes())
        ))
    }
}

/// What a SRC or DST argument may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// One node only (a SRC, or what `verify` compares).
    Node,
    /// One node or a whole cluster (every write-enabled node of it).
    NodeOrCluster,
}

/// Resolves `spec` (a URL, `CLUSTER/NODE` or, with
/// [`Allow::NodeOrCluster`], `CLUSTER`) to the endpoints it names.
pub async fn resolve(
    spec: &str,
    config: &Config,
    allow: Allow,
) -> Result<Vec<Endpoint>, ControlError> {
    if spec.contains("://") {
        return parse_url(spec).map(|e| vec![e]);
    }
    if spec.is_empty() {
        return Err(ControlError::Usage("an empty SRC/DST was given".into()));
    }
    let (cluster_name, node_name) = match spec.split_once('/') {
        Some((c, n)) => (c, Some(n)),
        None if allow == Allow::NodeOrCluster => (spec, None),
        None => {
            return Err(ControlError::Usage(format!(
                "{spec:?} is neither a node URL (http://host:port) nor CLUSTER/NODE"
            )))
        }
    };
    let table = routing_table(config).await?;
    let cluster = find_cluster(&table, cluster_name)
        .map_err(|e| ControlError::Failed(format!("{e} (in {spec:?})")))?;
    let nodes = cluster_nodes(cluster, &table).await?;
    let chosen: Vec<&NodeConfig> = match node_name {
        Some(name) => {
            let node = nodes.iter().find(|n| n.name == name).ok_or_else(|| {
                let known: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
                ControlError::Failed(format!(
                    "unknown node {name:?} in cluster {cluster_name:?} (it has: {})",
                    known.join(", ")
                ))
            })?;
            vec![node]
        }
        None => {
            let writable: Vec<&NodeConfig> =
                nodes.iter().filter(|n| n.mode.accepts_writes()).collect();
            if writable.is_empty() {
                return Err(ControlError::Failed(format!(
                    "cluster {cluster_name:?} has no node that takes writes"
                )));
            }
            writable
        }
    };
    Ok(chosen
        .into_iter()
        .map(|node| node_endpoint(cluster, node))
        .collect())
}

/// A node of `cluster` as an endpoint, with the cluster's credentials.
pub fn node_endpoint(cluster: &ClusterConfig, node: &NodeConfig) -> Endpoint {
    Endpoint {
        label: format!("{}/{}", cluster.name, node.name),
        base: node.url.to_string().trim_end_matches('/').to_string(),
        user: cluster.username.clone(),
        password: cluster.password.as_ref().map(|p| p.expose().to_string()),
    }
}

/// The cluster called `name` in `table`; the error lists the ones it has.
pub fn find_cluster<'a>(table: &'a Config, name: &str) -> Result<&'a ClusterConfig, ControlError> {
    table
        .clusters
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = table.clusters.iter().map(|c| c.name.as_str()).collect();
            ControlError::Failed(format!(
                "unknown cluster {name:?} (the routing table has: {})",
                known.join(", ")
            ))
        })
}

/// One node of a cluster as the routing table in force names it.
#[derive(Debug, Clone)]
pub struct Member {
    /// The node's name in its cluster.
    pub name: String,
    /// Its mode in the table (overrides in Redis are not applied here).
    pub mode: NodeMode,
    pub endpoint: Endpoint,
}

/// Every node of cluster `cluster_name` in the routing table in force (SRV
/// clusters as their records name them now), in table order.
pub async fn cluster_members(
    config: &Config,
    cluster_name: &str,
) -> Result<Vec<Member>, ControlError> {
    let table = routing_table(config).await?;
    let cluster = find_cluster(&table, cluster_name)?;
    let nodes = cluster_nodes(cluster, &table).await?;
    Ok(nodes
        .into_iter()
        .map(|node| Member {
            endpoint: node_endpoint(cluster, &node),
            name: node.name,
            mode: node.mode,
        })
        .collect())
}

/// Every write-enabled node of every cluster that may hold data of `db`
/// under the routing table in force (its `[[route]]` targets and, unless a
/// rule takes all of `db`, the default cluster).
pub async fn holding(config: &Config, db: &str) -> Result<Vec<Endpoint>, ControlError> {
    let table = routing_table(config).await?;
    let names: Vec<&str> = table.clusters.iter().map(|c| c.name.as_str()).collect();
    let default = names
        .iter()
        .position(|n| *n == table.routing.default_cluster)
        .unwrap_or(0);
    let rules = crate::routing::rules::Rules::compile(&table.routes, &names, default)
        .with_moves(&table.moves, &names);
    let mut out = Vec::new();
    for index in rules.clusters_for_db(db) {
        let Some(cluster) = table.clusters.get(index) else {
            continue;
        };
        let nodes = cluster_nodes(cluster, &table).await?;
        let writable: Vec<&NodeConfig> = nodes.iter().filter(|n| n.mode.accepts_writes()).collect();
        if writable.is_empty() {
            return Err(ControlError::Failed(format!(
                "cluster {:?} (which holds {db:?}) has no node that takes writes",
                cluster.name
            )));
        }
        out.extend(writable.into_iter().map(|n| node_endpoint(cluster, n)));
    }
    Ok(out)
}

/// The configuration holding the routing table in force: the Redis
/// document with `source = "redis"`, else `config` itself.
pub async fn routing_table(config: &Config) -> Result<Config, ControlError> {
    if config.routing.source != RoutingSource::Redis {
        return Ok(config.clone());
    }
    let routing = &config.routing;
    match store::show(&routing.redis_url, &routing.key_prefix).await {
        Ok(Some((version, document))) => {
            store::validate(&document, &format!("redis routing document v{version}")).map_err(
                |errors| {
                    ControlError::Failed(format!(
                        "the routing document in Redis is invalid: {}",
                        errors.join("; ")
                    ))
                },
            )
        }
        Ok(None) => Err(ControlError::Failed(format!(
            "no routing document in Redis at {} (key prefix {:?}); push one with `admin routes push`",
            routing.redis_url, routing.key_prefix
        ))),
        Err(e) => Err(ControlError::Failed(format!(
            "cannot read the routing table from Redis: {e}"
        ))),
    }
}

/// A cluster's nodes: the configured ones, or those its SRV records name now.
pub async fn cluster_nodes(
    cluster: &ClusterConfig,
    table: &Config,
) -> Result<Vec<NodeConfig>, ControlError> {
    let Some(srv) = &cluster.srv else {
        return Ok(cluster.nodes.clone());
    };
    let resolver = dns::resolver(&table.routing.dns_servers)
        .map_err(|e| ControlError::Failed(format!("cannot set up DNS: {e}")))?;
    let targets = dns::lookup(&resolver, &srv.name).await.map_err(|e| {
        ControlError::Failed(format!(
            "cluster {:?}: SRV lookup of {} failed: {e}",
            cluster.name, srv.name
        ))
    })?;
    let (resolved, unresolved) = dns::resolve_targets(&resolver, &targets).await;
    for ((host, port), error) in unresolved {
        tracing::warn!(cluster = %cluster.name, target = %format!("{host}:{port}"), %error, "SRV target does not resolve; left out");
    }
    Ok(resolved
        .into_iter()
        .filter_map(|(t, addrs)| dns::node_for(&cluster.name, &srv.scheme, &t, addrs))
        .collect())
}

/// `scheme://[user[:pass]@]host[:port][/]`, user and password percent-decoded.
pub fn parse_url(spec: &str) -> Result<Endpoint, ControlError> {
    let bad =
        |why: &str| ControlError::Usage(format!("invalid node URL {:?}: {why}", redact(spec)));
    let (scheme, rest) = spec.split_once("://").ok_or_else(|| bad("no scheme"))?;
    if scheme != "http" && scheme != "https" {
        return Err(bad("the scheme must be http or https"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err(bad("a node URL has no path or query"));
    }
    let (userinfo, host) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let base = format!("{scheme}://{host}");
    base.parse::<http::Uri>().map_err(|e| bad(&e.to_string()))?;
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (u, p) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| bad("credentials are not UTF-8"))
            };
            (Some(decode(u)?), p.map(decode).transpose()?)
        }
    };
    Ok(Endpoint {
        label: base.clone(),
        base,
        user,
        password,
    })
}

/// `spec` with any password replaced by `***`, for messages.
pub fn redact(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else {
        return spec.to_string();
    };
    match rest.rsplit_once('@') {
        Some((info, host)) => {
            let user = info.split_once(':').map_or(info, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => spec.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_and_without_credentials() {
        let e = parse_url("http://127.0.0.1:8086").unwrap();
        assert_eq!(e.base, "http://127.0.0.1:8086");
        assert!(e.user.is_none() && e.authorization().is_none());
        let e = parse_url("https://ad%40min:p%3Ass@db.local:8443/").unwrap();
        assert_eq!(e.base, "https://db.local:8443");
        assert_eq!(e.label, "https://db.local:8443");
        assert_eq!(e.user.as_deref(), Some("ad@min"));
        assert_eq!(e.password.as_deref(), Some("p:ss"));
        assert!(!format!("{e:?}").contains("p:ss"));
    }

    #[test]
    fn bad_urls_are_usage_errors_without_the_password() {
        for bad in [
            "ftp://h:1",
            "http://",
            "http://h:1/db",
            "http://h:1?x",
            "http://u:secret@",
        ] {
            match parse_url(bad) {
                Err(ControlError::Usage(m)) => assert!(!m.contains("secret"), "{m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn names_resolve_through_the_table() {
        let config = Config::from_toml_str(
            r#"
            [[cluster]]
            name = "main"
            username = "u"
            password = "p"
            nodes = [
              { name = "a", url = "http://127.0.0.1:1" },
              { name = "b", url = "http://127.0.0.1:2", mode = "read-only" },
              { name = "c", url = "http://127.0.0.1:3", mode = "write-only" },
            ]
            "#,
            "test",
        )
        .unwrap();
        let one = resolve("main/b", &config, Allow::Node).await.unwrap();
        assert_eq!(one[0].label, "main/b");
        assert_eq!(one[0].base, "http://127.0.0.1:2");
        assert_eq!(one[0].user.as_deref(), Some("u"));
        let all = resolve("main", &config, Allow::NodeOrCluster)
            .await
            .unwrap();
        let labels: Vec<&str> = all.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["main/a", "main/c"]);
        assert!(matches!(
            resolve("main", &config, Allow::Node).await,
            Err(ControlError::Usage(_))
        ));
        match resolve("main/z", &config, Allow::Node).await {
            Err(ControlError::Failed(m)) => assert!(m.contains("unknown node \"z\""), "{m}"),
            other => panic!("{other:?}"),
        }
        match resolve("nope/a", &config, Allow::Node).await {
            Err(ControlError::Failed(m)) => assert!(m.contains("unknown cluster"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_clusters_holding_a_database_follow_the_routes() {
        let config = Config::from_toml_str(
            r#"
            [routing]
            default_cluster = "main"
            [[cluster]]
            name = "main"
            nodes = [
              { name = "a", url = "http://127.0.0.1:1" },
              { name = "b", url = "http://127.0.0.1:2", mode = "read-only" },
            ]
            [[cluster]]
            name = "more"
            username = "m"
            nodes = [{ name = "c", url = "http://127.0.0.1:3" }]
            [[route]]
            database = "big"
            shard = ["main", "more"]
            [[route]]
            database = "far"
            cluster = "more"
            "#,
            "test",
        )
        .unwrap();
        let labels = |e: Vec<Endpoint>| e.into_iter().map(|e| e.label).collect::<Vec<_>>();
        assert_eq!(
            labels(holding(&config, "big").await.unwrap()),
            ["main/a", "more/c"]
        );
        assert_eq!(labels(holding(&config, "far").await.unwrap()), ["more/c"]);
        assert_eq!(labels(holding(&config, "x").await.unwrap()), ["main/a"]);
        assert_eq!(
            holding(&config, "far").await.unwrap()[0].user.as_deref(),
            Some("m")
        );
    }
}
