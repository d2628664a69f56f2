//! DNS SRV records as a routing source: a `[[cluster]]` with `srv` gets its
//! nodes from the SRV records of that name (target host + port), looked up
//! every `srv_interval`. When the list of targets changes, the running
//! configuration with that cluster's nodes replaced is handed to the reload
//! routing [`Sink`] ([`Sink::replace_discovered_nodes`]). A failed
//! lookup keeps the last list.
//!
//! The targets' addresses (A and AAAA) are resolved through the same
//! resolver at every refresh and carried in the node configurations, so a
//! target name that only `dns_servers` knows works, and a changed address is
//! a routing change like any other. A target that does not resolve is left
//! out (logged, and reported to the sink for the
//! `influxdb_router_srv_unresolved_targets` gauge); the rest of the cluster stays.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::watch;

use super::{Applied, Sink};
use crate::config::{NodeConfig, NodeMode};

/// One SRV target: host name (without the trailing dot) and port.
pub type Target = (String, u16);

/// A target with the addresses its host resolved to.
pub type Resolved = (Target, Vec<IpAddr>);

/// Builds the resolver: the given servers (UDP and TCP each), or the system
/// configuration when there are none. Answers are not cached, so every
/// lookup asks the server.
pub fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        Resolver::builder_tokio()
            .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?
    } else {
        let mut config = ResolverConfig::new();
        for &addr in servers {
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
        }
        Resolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.cache_size = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    Ok(builder.build())
}

/// Looks up the SRV records of `name`: their targets, sorted and deduplicated.
/// Targets that are not usable as a host (the root ".", port 0) are skipped.
pub async fn lookup(resolver: &TokioResolver, name: &str) -> Result<Vec<Target>, String> {
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    let answer = resolver
        .srv_lookup(fqdn.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let mut targets: Vec<Target> = answer
        .iter()
        .filter_map(|srv| {
            let host = srv.target().to_ascii();
            let host = host.trim_end_matches('.');
            (!host.is_empty() && srv.port() != 0).then(|| (host.to_ascii_lowercase(), srv.port()))
        })
        .collect();
    targets.sort();
    targets.dedup();
    Ok(targets)
}

/// The addresses of each target host, resolved through `resolver` (a
/// host that is an IP address stands for itself), and the targets whose
/// host did not resolve, with why.
pub async fn resolve_targets(
    resolver: &TokioResolver,
    targets: &[Target],
) -> (Vec<Resolved>, Vec<(Target, String)>) {
    let mut resolved = Vec::with_capacity(targets.len());
    let mut failed = Vec::new();
    for target in targets {
        if let Ok(ip) = target.0.parse::<IpAddr>() {
            resolved.push((target.clone(), vec![ip]));
            continue;
        }
        let fqdn = format!("{}.", target.0);
        match resolver.lookup_ip(fqdn.as_str()).await {
            Ok(answer) => {
                let mut ips: Vec<IpAddr> = answer.iter().collect();
                ips.sort();
                ips.dedup();
                if ips.is_empty() {
                    failed.push((target.clone(), "no A or AAAA records".to_string()));
                } else {
                    resolved.push((target.clone(), ips));
                }
            }
            Err(e) => failed.push((target.clone(), e.to_string())),
        }
    }
    (resolved, failed)
}

/// The node of `cluster` for one target: named
/// `<cluster>-<host>-<port>` (other characters than `[A-Za-z0-9_.-]`
/// replaced by `_`), read-write, at `<scheme>://host:port`, connected to at
/// `addrs` (empty: the system resolves the host). `None` when the host does
/// not make a URL.
pub fn node_for(
    cluster: &str,
    scheme: &str,
    (host, port): &Target,
    addrs: Vec<IpAddr>,
) -> Option<NodeConfig> {
    let name: String = format!("{cluster}-{host}-{port}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let url = format!("{scheme}://{host}:{port}").parse().ok()?;
    Some(NodeConfig {
        name,
        url,
        mode: NodeMode::ReadWrite,
        addrs,
    })
}

/// Starts one refresh task per cluster with `srv` in the running
/// configuration; they end when `stop` changes. A task also ends when its
/// cluster is no longer discovered through SRV (after a reload).
pub fn start(sink: &Arc<dyn Sink>, stop: watch::Receiver<bool>) {
    let config = sink.running_config();
    let srv_clusters: Vec<String> = config
        .clusters
        .iter()
        .filter(|c| c.srv.is_some())
        .map(|c| c.name.clone())
        .collect();
    if srv_clusters.is_empty() {
        return;
    }
    let resolver = match resolver(&config.routing.dns_servers) {
        Ok(resolver) => resolver,
        Err(e) => {
            tracing::error!(error = %e, "DNS SRV discovery is off; the SRV clusters keep no nodes");
            return;
        }
    };
    for cluster in srv_clusters {
        tokio::spawn(refresh(
            Arc::clone(sink),
            resolver.clone(),
            cluster,
            stop.clone(),
        ));
    }
}

/// Looks up the records of `cluster` now and then every `srv_interval`.
async fn refresh(
    sink: Arc<dyn Sink>,
    resolver: TokioResolver,
    cluster: String,
    mut stop: watch::Receiver<bool>,
) {
    // the record name and the targets (with their addresses) last published for it
    let mut last: Option<(String, Vec<Resolved>)> = None;
    loop {
        let config = sink.running_config();
        let Some(srv) = config
            .clusters
            .iter()
            .find(|c| c.name == cluster)
            .and_then(|c| c.srv.clone())
        else {
            tracing::info!(%cluster, "cluster no longer discovered through DNS SRV; its lookups stop");
            return;
        };
        let looked_up = tokio::select! {
            result = async {
                let targets = lookup(&resolver, &srv.name).await?;
                Ok::<_, String>(resolve_targets(&resolver, &targets).await)
            } => result,
            _ = stop.changed() => return,
        };
        let looked_up = looked_up.map(|(targets, unresolved)| {
            for ((host, port), error) in &unresolved {
                tracing::warn!(%cluster, srv = %srv.name, target = %format!("{host}:{port}"), %error, "SRV target does not resolve; left out of the cluster");
            }
            let names: Vec<String> = unresolved
                .iter()
                .map(|((host, port), _)| format!("{host}:{port}"))
                .collect();
            sink.srv_targets_unresolved(&cluster, &names);
            targets
        });
        match looked_up {
            Ok(targets) if last.as_ref() != Some(&(srv.name.clone(), targets.clone())) => {
                let nodes: Vec<NodeConfig> = targets
                    .iter()
                    .filter_map(|(t, addrs)| node_for(&cluster, &srv.scheme, t, addrs.clone()))
                    .collect();
                let origin = format!("DNS SRV {} for cluster {cluster}", srv.name);
                match sink.replace_discovered_nodes(&cluster, nodes, &origin) {
                    Some(Applied::Swapped(version)) => {
                        tracing::info!(%cluster, version, nodes = targets.len(), "routing table swapped after an SRV change");
                        last = Some((srv.name.clone(), targets));
                    }
                    Some(Applied::Unchanged) => last = Some((srv.name.clone(), targets)),
                    // refused (logged and counted there): tried again next time
                    Some(Applied::Refused(_)) => {}
                    None => return,
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%cluster, srv = %srv.name, error = %e, "SRV lookup failed; the last node list stays")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(srv.interval) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_sanitized() {
        let node = node_for("k8s", "http", &("influx-0.svc.local".into(), 8086), vec![]).unwrap();
        assert_eq!(node.name, "k8s-influx-0.svc.local-8086");
        assert_eq!(node.url.to_string(), "http://influx-0.svc.local:8086/");
        assert_eq!(node.mode, NodeMode::ReadWrite);
        let odd = node_for("c", "http", &("a_b".into(), 1), vec![]).unwrap();
        assert_eq!(odd.name, "c-a_b-1");
        let spaced = node_for("c d", "http", &("h".into(), 2), vec![]);
        assert!(spaced.is_none() || spaced.unwrap().name == "c_d-h-2");
    }
}
