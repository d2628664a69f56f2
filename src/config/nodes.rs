//! `[[cluster]]` tables and their nodes: names, credentials, URLs, modes.
//!
//! Cluster names must be unique, node names unique across all clusters, and
//! every node URL an `http://host[:port]` or `https://host[:port]`. A cluster
//! has either `nodes` or `srv` (its nodes are then discovered through DNS SRV
//! records, refreshed every `srv_interval`).

use std::collections::HashMap;

use http::Uri;

use super::error::Problems;
use super::raw::{join, table_into, RawCluster, RawNode};
use super::units::parse_duration;
use super::{ClusterConfig, NodeConfig, NodeMode, NodeTlsConfig, Secret, SrvConfig};

/// Remembers where each name was first used, to report duplicates.
type Seen = HashMap<String, String>;

/// Checks every `[[cluster]]`. Returns the valid clusters and the name of
/// every cluster that has one, valid or not (for `routing.default_cluster`).
pub(crate) fn clusters(
    tables: Option<Vec<toml::Table>>,
    problems: &mut Problems,
) -> (Vec<ClusterConfig>, Vec<String>) {
    let tables = tables.unwrap_or_default();
    if tables.is_empty() && !problems.mentions("cluster") {
        problems.push(
            "cluster",
            "at least one [[cluster]] with at least one node is required",
        );
    }
    let (mut clusters, mut names) = (Vec::new(), Vec::new());
    let (mut seen_clusters, mut seen_nodes) = (Seen::new(), Seen::new());
    for (i, table) in tables.into_iter().enumerate() {
        let path = format!("cluster[{i}]");
        let raw: RawCluster = table_into(table, &path, problems);
        names.extend(raw.name.clone().filter(|n| !n.is_empty()));
        let name_key = join(&path, "name");
        let srv = check_srv(&raw, &path, problems);
        let tls = check_node_tls(&raw, &path, problems);
        let name = check_name(raw.name, &name_key, &mut seen_clusters, problems);
        let nodes = match raw.nodes {
            None if raw.srv.is_some() => Vec::new(),
            nodes => check_nodes(nodes, &path, &mut seen_nodes, problems),
        };
        let password = check_credentials(raw.username.as_deref(), raw.password, &path, problems);
        let read_url = raw.read_url.as_deref().and_then(|text| {
            parse_node_url(text)
                .map_err(|message| problems.push(&join(&path, "read_url"), message))
                .ok()
        });
        if let Some(name) = name {
            let username = raw.username;
            clusters.push(ClusterConfig {
                name,
                username,
                password,
                nodes,
                srv,
                tls,
                read_url,
            });
        }
    }
    (clusters, names)
}

/// `ca_file` (read when the routing table is built: at start, and by a
/// reload that changes routing) and
/// `insecure_skip_verify`.
fn check_node_tls(raw: &RawCluster, path: &str, problems: &mut Problems) -> NodeTlsConfig {
    let ca_file = match raw.ca_file.as_deref() {
        None => None,
        Some("") => {
            problems.push(&join(path, "ca_file"), "expected a file path, got \"\"");
            None
        }
        Some(file) => Some(std::path::PathBuf::from(file)),
    };
    NodeTlsConfig {
        ca_file,
        insecure_skip_verify: raw.insecure_skip_verify.unwrap_or(false),
    }
}

/// `srv`, `srv_interval` and `scheme`: the latter two only with `srv`, and
/// `srv` only without `nodes`. `None` when the cluster has no (valid) `srv`.
fn check_srv(raw: &RawCluster, path: &str, problems: &mut Problems) -> Option<SrvConfig> {
    let srv_key = join(path, "srv");
    if raw.srv.is_none() {
        for (key, given) in [
            ("srv_interval", raw.srv_interval.is_some()),
            ("scheme", raw.scheme.is_some()),
        ] {
            if given {
                problems.push(
                    &join(path, key),
                    "only applies to a cluster with srv; set srv, or remove this key",
                );
            }
        }
        return None;
    }
    let mut ok = true;
    let name = raw.srv.clone().unwrap_or_default();
    if raw.nodes.is_some() {
        problems.push(
            &srv_key,
            "a cluster has either nodes or srv, not both; remove one of them",
        );
        ok = false;
    }
    let valid_name = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_name {
        problems.push(
            &srv_key,
            format!("expected a DNS name like \"_http._tcp.influxdb.svc\", got {name:?}"),
        );
        ok = false;
    }
    let interval_text = raw.srv_interval.as_deref().unwrap_or("15s");
    let interval = match parse_duration(interval_text) {
        Ok(d) if d.is_zero() => {
            problems.push(
                &join(path, "srv_interval"),
                format!("expected a duration greater than zero, got {interval_text:?}"),
            );
            ok = false;
            d
        }
        Ok(d) => d,
        Err(message) => {
            problems.push(&join(path, "srv_interval"), message);
            ok = false;
            std::time::Duration::ZERO
        }
    };
    let scheme = raw.scheme.clone().unwrap_or_else(|| "http".to_owned());
    if scheme != "http" && scheme != "https" {
        let message = format!("expected \"http\" or \"https\", got {scheme:?}");
        problems.push(&join(path, "scheme"), message);
        ok = false;
    }
    ok.then_some(SrvConfig {
        name,
        interval,
        scheme,
    })
}

fn check_nodes(
    tables: Option<Vec<toml::Table>>,
    cluster_path: &str,
    seen: &mut Seen,
    problems: &mut Problems,
) -> Vec<NodeConfig> {
    let key = join(cluster_path, "nodes");
    let tables = tables.unwrap_or_default();
    if tables.is_empty() && !problems.mentions(&key) {
        problems.push(
            &key,
            "expected at least one node like { name = \"a\", url = \"http://127.0.0.1:8086\" }, or srv = \"_http._tcp.influxdb.svc\" for DNS SRV discovery",
        );
    }
    let mut nodes = Vec::new();
    for (j, table) in tables.into_iter().enumerate() {
        let path = format!("{key}[{j}]");
        let raw: RawNode = table_into(table, &path, problems);
        nodes.extend(check_node(raw, &path, seen, problems));
    }
    nodes
}

fn check_node(
    raw: RawNode,
    path: &str,
    seen: &mut Seen,
    problems: &mut Problems,
) -> Option<NodeConfig> {
    let name = check_name(raw.name, &join(path, "name"), seen, problems);
    let url_key = join(path, "url");
    let url = match raw.url {
        Some(text) => parse_node_url(&text)
            .map_err(|message| problems.push(&url_key, message))
            .ok(),
        None if problems.mentions(&url_key) => None,
        None => {
            problems.push(&url_key, "is required, like \"http://127.0.0.1:8086\"");
            None
        }
    };
    let mode = match raw.mode.as_deref().map(str::parse) {
        None => Some(NodeMode::ReadWrite),
        Some(Ok(mode)) => Some(mode),
        Some(Err(message)) => {
            problems.push(&join(path, "mode"), message);
            None
        }
    };
    Some(NodeConfig {
        name: name?,
        url: url?,
        mode: mode?,
        addrs: Vec::new(),
    })
}

/// Cluster and node names: required, `[A-Za-z0-9_.-]+`, unique.
fn check_name(
    value: Option<String>,
    key: &str,
    seen: &mut Seen,
    problems: &mut Problems,
) -> Option<String> {
    let kind = if key.contains(".nodes[") {
        "node"
    } else {
        "cluster"
    };
    let message = match value {
        None if problems.mentions(key) => return None,
        None => format!(
            "is required; every {kind} needs a name of letters, digits, \"_\", \".\" or \"-\""
        ),
        Some(name) if name.is_empty() || !name.chars().all(is_name_char) => {
            format!("expected a name of letters, digits, \"_\", \".\" or \"-\", got {name:?}")
        }
        // names become queue directories: "." and ".." would point elsewhere
        Some(name) if name.chars().all(|c| c == '.') => {
            format!("expected a name with at least one letter, digit, \"_\" or \"-\", got {name:?}")
        }
        Some(name) => match seen.get(&name) {
            Some(first) => format!("duplicate {kind} name {name:?}, already used by {first}"),
            None => {
                seen.insert(name.clone(), key.trim_end_matches(".name").to_owned());
                return Some(name);
            }
        },
    };
    problems.push(key, message);
    None
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// `username` is optional; `password` only together with it.
fn check_credentials(
    username: Option<&str>,
    password: Option<String>,
    path: &str,
    problems: &mut Problems,
) -> Option<Secret> {
    let username_key = join(path, "username");
    if username == Some("") {
        problems.push(&username_key, "expected a user name, got \"\"");
    }
    if password.is_some() && username.is_none() && !problems.mentions(&username_key) {
        problems.push(
            &join(path, "password"),
            "a password needs a username; set username too, or remove password",
        );
    }
    password.map(Secret::new)
}

/// A node URL: `http://host[:port]` or `https://host[:port]`, with at most
/// a `/` path and no query.
pub(crate) fn parse_node_url(text: &str) -> Result<Uri, String> {
    let expected = || format!("expected an http:// or https:// URL with a host, got {text:?}");
    let uri: Uri = text.parse().map_err(|_| expected())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(expected());
    }
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(expected)?;
    if authority.as_str().contains('@') {
        // Do not quote the value: it holds a password.
        return Err(
            "expected no credentials in a node URL; set username and password on the cluster"
                .into(),
        );
    }
    let port = &authority.as_str()[authority.host().len()..];
    if !port.is_empty() && port[1..].parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("expected a port from 1 to 65535, got {text:?}"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "expected a URL without a path or query, got {text:?}"
        ));
    }
    Ok(uri)
}
