//! HTTPS on the listener: the rustls acceptor built from `tls_cert` and
//! `tls_key` at start, and the handshake every accepted connection goes
//! through before HTTP/1.1 is served on it.
//!
//! A handshake must finish within `server.read_timeout`. One that fails or
//! times out closes that connection only (logged at debug level, since port
//! scanners and plain-HTTP clients cause them) and gives its connection
//! permit back. Plain-HTTP listeners never come here.

use std::sync::Arc;

use hyper_util::server::graceful::Watcher;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;

use super::Shared;
use crate::config::ServerTlsConfig;
use crate::tls::TlsError;

/// The listener's TLS acceptor (certificate chain and key, read at start).
#[derive(Clone)]
pub struct Https {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https").finish_non_exhaustive()
    }
}

impl Https {
    /// Reads the certificate chain and key named by `tls`.
    pub fn new(tls: &ServerTlsConfig) -> Result<Https, TlsError> {
        let config = crate::tls::server_config(tls)?;
        Ok(Https {
            acceptor: TlsAcceptor::from(config),
        })
    }

    /// Runs the handshake on `stream` in its own task, then serves HTTP/1.1
    /// on the encrypted stream; `permit` is held until the connection ends.
    pub(super) fn accept(
        &self,
        shared: &Arc<Shared>,
        watcher: Watcher,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
    ) {
        let (acceptor, shared) = (self.acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            let limit = shared.config.server.read_timeout;
            let peer = stream.peer_addr().ok();
            match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => match peer {
                    Some(addr) => super::serve_connection(&shared, watcher, tls, addr).await,
                    None => tracing::debug!("peer address unknown; connection closed"),
                },
                Ok(Err(error)) => {
                    tracing::debug!(?peer, %error, "TLS handshake failed; connection closed")
                }
                Err(_) => {
                    tracing::debug!(?peer, ?limit, "TLS handshake timed out; connection closed")
                }
            }
            drop(permit);
        });
    }
}
