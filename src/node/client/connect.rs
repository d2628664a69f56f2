//! Opening connections to nodes: the connectors (plain TCP for `http://`
//! nodes, TLS verified as a cluster's [`Trust`] says for `https://` ones),
//! the HTTP/1 handshake that starts a connection's task, and [`Clients`],
//! which hands a routing table's nodes their [`NodeClient`] and shares TLS
//! connectors between clusters (and tables) that trust the same way.
//!
//! Host names are resolved by [`NodeResolver`]: through the addresses the
//! routing table pins for them (DNS SRV targets, which the router resolves
//! through `[routing] dns_servers` itself, so names only that server knows
//! work), else by the system.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

use http::Uri;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use super::{failed, NodeError};
use crate::config::{ClusterConfig, NodeConfig};
use crate::payload::PayloadBody;
use crate::tls::{TlsError, Trust};

/// Opens plain TCP connections to `http://` nodes.
pub type HttpClient = HttpConnector<NodeResolver>;

/// Opens TLS connections to `https://` nodes, verified one way.
pub type HttpsClient = HttpsConnector<HttpConnector<NodeResolver>>;

/// Host name → the addresses a routing table pins it to.
pub type Pins = Arc<RwLock<HashMap<String, Arc<[IpAddr]>>>>;

/// Resolves node host names: pinned ones to their pinned addresses, the
/// rest through the system (`getaddrinfo` on a blocking thread).
#[derive(Clone)]
pub struct NodeResolver {
    pins: Pins,
    system: GaiResolver,
}

impl std::fmt::Debug for NodeResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeResolver").finish_non_exhaustive()
    }
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, std::io::Error>> + Send>>;

impl tower_service::Service<Name> for NodeResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let pinned = self
            .pins
            .read()
            .ok()
            .and_then(|pins| pins.get(&name.as_str().to_ascii_lowercase()).cloned());
        match pinned {
            // the connector sets the port
            Some(addrs) => {
                let list: Vec<SocketAddr> =
                    addrs.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
                Box::pin(std::future::ready(Ok(list.into_iter())))
            }
            None => {
                let lookup = self.system.call(name);
                Box::pin(async move { Ok(lookup.await?.collect::<Vec<_>>().into_iter()) })
            }
        }
    }
}

/// How long establishing a TCP connection to a node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the connector for plain `http://` nodes, resolving through `pins`.
pub fn build(pins: &Pins) -> HttpClient {
    connector(pins)
}

/// Builds a connector for `https://` nodes that verifies them as `trust`
/// says, resolving through `pins`.
pub fn build_tls(trust: &Trust, pins: &Pins) -> Result<HttpsClient, TlsError> {
    let mut tcp = connector(pins);
    // the TLS connector hands its https:// addresses to this one
    tcp.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(trust.client_config()?)
        .https_only()
        .enable_http1()
        .wrap_connector(tcp))
}

fn connector(pins: &Pins) -> HttpClient {
    let resolver = NodeResolver {
        pins: Arc::clone(pins),
        system: GaiResolver::new(),
    };
    let mut connector = HttpConnector::new_with_resolver(resolver);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector
}

/// How one node's connections are opened.
#[derive(Debug, Clone)]
pub enum NodeClient {
    Plain(HttpClient),
    Tls(Arc<HttpsClient>),
}

impl NodeClient {
    /// Whether both open connections the same way (plain ones always do).
    pub fn same(&self, other: &NodeClient) -> bool {
        match (self, other) {
            (NodeClient::Plain(_), NodeClient::Plain(_)) => true,
            (NodeClient::Tls(a), NodeClient::Tls(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Opens a connection to `uri` (`scheme://host:port/`) and starts the
    /// task that drives it.
    pub(super) async fn connect(&self, uri: Uri) -> Result<SendRequest<PayloadBody>, NodeError> {
        match self {
            NodeClient::Plain(connector) => {
                let io = connector.clone().call(uri).await.map_err(|e| failed(&e))?;
                handshake(io).await
            }
            NodeClient::Tls(connector) => {
                let io = (**connector)
                    .clone()
                    .call(uri)
                    .await
                    .map_err(|e| failed(&*e))?;
                handshake(io).await
            }
        }
    }
}

/// Speaks HTTP/1 over `io`; the connection lives in its own task until the
/// node or the pool closes it.
async fn handshake<T>(io: T) -> Result<SendRequest<PayloadBody>, NodeError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // InfluxDB copies a rejected line into `X-Influxdb-Error` raw, control
    // bytes included: such a header line is dropped, and the answer (a 400
    // with the error in its body too) is still read as the answer it is
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .ignore_invalid_headers_in_responses(true)
        .handshake(io)
        .await
        .map_err(|e| failed(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "node connection ended with an error");
        }
    });
    Ok(sender)
}

/// How the nodes of one routing table connect: the plain connector every
/// `http://` node shares and one TLS connector per distinct [`Trust`].
#[derive(Debug)]
pub struct Clients {
    /// Shared by every table's connectors.
    pins: Pins,
    plain: HttpClient,
    tls: Vec<(Trust, Arc<HttpsClient>)>,
    /// Clusters whose node certificates are not verified.
    insecure: Vec<String>,
}

impl Default for Clients {
    fn default() -> Self {
        let pins = Pins::default();
        Clients {
            plain: build(&pins),
            pins,
            tls: Vec::new(),
            insecure: Vec::new(),
        }
    }
}

impl Clients {
    /// The connectors for a new table, sharing the plain one of `previous`.
    pub fn after(previous: Option<&Clients>) -> Clients {
        match previous {
            Some(previous) => Clients {
                pins: Arc::clone(&previous.pins),
                plain: previous.plain.clone(),
                tls: Vec::new(),
                insecure: Vec::new(),
            },
            None => Clients::default(),
        }
    }

    /// Pins the hosts of `config`'s nodes that carry resolved addresses
    /// (replacing the pins of any earlier table); the connectors of every
    /// table resolve through them from now on.
    pub fn pin(&self, config: &crate::config::Config) {
        let mut pins: HashMap<String, Arc<[IpAddr]>> = HashMap::new();
        for node in config.clusters.iter().flat_map(|c| &c.nodes) {
            if let (false, Some(host)) = (node.addrs.is_empty(), node.url.host()) {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                pins.insert(host.to_ascii_lowercase(), node.addrs.clone().into());
            }
        }
        if let Ok(mut current) = self.pins.write() {
            *current = pins;
        }
    }

    /// The clients of `cluster`'s nodes. Reads its `ca_file` when it has
    /// `https://` nodes (or discovers them), and reuses the TLS connector of
    /// `previous` that trusts the same certificates. Warns once when the
    /// cluster starts skipping certificate verification.
    pub fn for_cluster(
        &mut self,
        cluster: &ClusterConfig,
        previous: Option<&Clients>,
    ) -> Result<ClusterClients, TlsError> {
        let tls = match uses_tls(cluster) {
            true => Some(self.tls_client(cluster, previous)?),
            false => None,
        };
        Ok(ClusterClients {
            plain: self.plain.clone(),
            tls,
        })
    }

    fn tls_client(
        &mut self,
        cluster: &ClusterConfig,
        previous: Option<&Clients>,
    ) -> Result<Arc<HttpsClient>, TlsError> {
        let trust = Trust::load(&cluster.tls)?;
        if trust == Trust::Anything {
            let known = previous.is_some_and(|p| p.insecure.contains(&cluster.name));
            if !known {
                tracing::warn!(cluster = %cluster.name, "insecure_skip_verify: the certificates of this cluster's https nodes are not verified");
            }
            self.insecure.push(cluster.name.clone());
        }
        let reusable = self
            .tls
            .iter()
            .chain(previous.map(|p| p.tls.as_slice()).unwrap_or_default())
            .find(|(t, _)| *t == trust)
            .map(|(_, client)| client.clone());
        let client = match reusable {
            Some(client) => client,
            None => Arc::new(build_tls(&trust, &self.pins)?),
        };
        if !self.tls.iter().any(|(t, _)| *t == trust) {
            self.tls.push((trust, client.clone()));
        }
        Ok(client)
    }
}

/// Whether `cluster` has, or may discover, `https://` nodes.
fn uses_tls(cluster: &ClusterConfig) -> bool {
    cluster
        .read_url
        .as_ref()
        .is_some_and(|url| url.scheme_str() == Some("https"))
        || cluster
            .srv
            .as_ref()
            .is_some_and(|srv| srv.scheme == "https")
        || cluster
            .nodes
            .iter()
            .any(|n| n.url.scheme_str() == Some("https"))
}

/// The clients of one cluster's nodes.
#[derive(Debug)]
pub struct ClusterClients {
    plain: HttpClient,
    tls: Option<Arc<HttpsClient>>,
}

impl ClusterClients {
    /// The client `node` sends through.
    pub fn for_node(&self, node: &NodeConfig) -> NodeClient {
        match (&self.tls, node.url.scheme_str()) {
            (Some(tls), Some("https")) => NodeClient::Tls(tls.clone()),
            _ => NodeClient::Plain(self.plain.clone()),
        }
    }
}
