//! TLS settings: the rustls configuration of the HTTPS listener and of the
//! clients towards `https://` nodes, built from PEM files.
//!
//! Everything uses rustls with the *ring* provider, passed explicitly to
//! every configuration, so the process-wide default provider is neither
//! needed nor touched. Certificate and key files are read here and only
//! here; every problem with them becomes a [`TlsError`] naming the file.
//! Nothing in this module may panic on what a file contains.
//!
//! Node certificates are verified against the system roots, or only against
//! the certificates of a cluster's `ca_file`; `insecure_skip_verify` accepts
//! any certificate (the handshake signatures are still checked, so the
//! connection is encrypted, but the node is not authenticated).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::{NodeTlsConfig, ServerTlsConfig};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {error}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{what} {}: {problem}", path.display())]
    Content {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("tls_cert {} and tls_key {} do not make a usable pair: {error}", cert.display(), key.display())]
    KeyPair {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
    #[error("no system root certificates found to verify https nodes ({0}); install the ca-certificates package, or set the cluster's ca_file")]
    NoSystemRoots(String),
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
}

/// The *ring* crypto provider, built once.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The listener's configuration: the certificate chain of `tls_cert` and the
/// private key of `tls_key`, offering HTTP/1.1 through ALPN.
pub fn server_config(tls: &ServerTlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certificates("tls_cert", &tls.cert)?;
    let key = read_private_key(&tls.key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| TlsError::KeyPair {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            error,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What a cluster's `https://` nodes are verified against. Two clusters
/// with equal trust can share one client (and its connection pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's root certificates.
    System,
    /// Only the certificates read from this `ca_file`.
    CaFile {
        path: PathBuf,
        certs: Vec<CertificateDer<'static>>,
    },
    /// Any certificate (`insecure_skip_verify = true`).
    Anything,
}

impl Trust {
    /// Reads the cluster's `ca_file`, if it has one and verifies at all.
    pub fn load(tls: &NodeTlsConfig) -> Result<Trust, TlsError> {
        match (&tls.ca_file, tls.insecure_skip_verify) {
            (_, true) => Ok(Trust::Anything),
            (None, false) => Ok(Trust::System),
            (Some(path), false) => Ok(Trust::CaFile {
                path: path.clone(),
                certs: read_certificates("ca_file", path)?,
            }),
        }
    }

    /// A client configuration that verifies node certificates this way.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?;
        let config = match self {
            Trust::Anything => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
                .with_no_client_auth(),
            Trust::System => builder
                .with_root_certificates(system_roots()?)
                .with_no_client_auth(),
            Trust::CaFile { path, certs } => builder
                .with_root_certificates(ca_roots(path, certs)?)
                .with_no_client_auth(),
        };
        Ok(config)
    }
}

/// The system's root certificates; an error when there are none at all.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = match found.errors.first() {
            Some(error) => error.to_string(),
            None => "the system certificate store is empty".to_owned(),
        };
        return Err(TlsError::NoSystemRoots(why));
    }
    for error in &found.errors {
        tracing::debug!(%error, "some system root certificates could not be loaded");
    }
    Ok(roots)
}

/// The certificates of a `ca_file`; each must be a usable trust anchor.
fn ca_roots(path: &Path, certs: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert.clone()).map_err(|error| TlsError::Content {
            what: "ca_file",
            path: path.to_owned(),
            problem: format!("a certificate cannot be used as a trust anchor: {error}"),
        })?;
    }
    Ok(roots)
}

/// Every `CERTIFICATE` block of the PEM file at `path`; at least one.
pub fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let problem = |problem: String| TlsError::Content {
        what,
        path: path.to_owned(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(format!("not a valid PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(problem(
            "expected PEM certificates (\"-----BEGIN CERTIFICATE-----\"), found none".into(),
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of the PEM file at `path`.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("tls_key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let problem = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "expected a PEM private key (\"-----BEGIN PRIVATE KEY-----\"), found none"
                    .to_owned()
            }
            other => format!("not a valid PEM file: {other}"),
        };
        TlsError::Content {
            what: "tls_key",
            path: path.to_owned(),
            problem,
        }
    })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.to_owned(),
        error,
    })
}

/// Accepts every server certificate, but still checks that the server holds
/// the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, as PEM files in `dir`.
    fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    fn files(cert: &Path, key: &Path) -> ServerTlsConfig {
        ServerTlsConfig {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }
    }

    #[test]
    fn a_matching_pair_serves_http1() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "server");
        let config = server_config(&files(&cert, &key)).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = self_signed(dir.path(), "server");
        let missing = dir.path().join("nope.pem");
        let error = server_config(&files(&missing, &key)).unwrap_err();
        let expected = format!("cannot read tls_cert {}: ", missing.display());
        assert!(error.to_string().starts_with(&expected), "{error}");
    }

    #[test]
    fn files_without_the_expected_pem_blocks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "server");
        let error = server_config(&files(&key, &key)).unwrap_err().to_string();
        assert!(error.contains("expected PEM certificates"), "{error}");
        assert!(
            error.starts_with(&format!("tls_cert {}", key.display())),
            "{error}"
        );
        let error = server_config(&files(&cert, &cert)).unwrap_err().to_string();
        assert!(error.contains("expected a PEM private key"), "{error}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
        let error = server_config(&files(&garbage, &key))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a valid PEM file"), "{error}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed(dir.path(), "one");
        let (_, other_key) = self_signed(dir.path(), "two");
        let error = server_config(&files(&cert, &other_key))
            .unwrap_err()
            .to_string();
        assert!(error.contains("do not make a usable pair"), "{error}");
    }

    #[test]
    fn trust_follows_ca_file_and_insecure_skip_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = self_signed(dir.path(), "ca");
        let tls = |ca_file: Option<&Path>, insecure| NodeTlsConfig {
            ca_file: ca_file.map(Path::to_owned),
            insecure_skip_verify: insecure,
        };
        assert_eq!(Trust::load(&tls(None, false)).unwrap(), Trust::System);
        let missing = dir.path().join("missing.pem");
        assert_eq!(
            Trust::load(&tls(Some(&missing), true)).unwrap(),
            Trust::Anything,
            "nothing is read when nothing is verified"
        );
        let error = Trust::load(&tls(Some(&missing), false)).unwrap_err();
        assert!(error.to_string().contains("cannot read ca_file"), "{error}");
        let trust = Trust::load(&tls(Some(&ca), false)).unwrap();
        assert!(matches!(&trust, Trust::CaFile { certs, .. } if certs.len() == 1));
        assert!(trust.client_config().is_ok());
        assert!(Trust::Anything.client_config().is_ok());
        // a changed file is a different trust
        self_signed(dir.path(), "ca");
        assert_ne!(Trust::load(&tls(Some(&ca), false)).unwrap(), trust);
    }

    #[test]
    fn system_trust_finds_the_system_roots() {
        let result = Trust::System.client_config();
        assert!(
            result.is_ok(),
            "{} (install the ca-certificates package)",
            result.unwrap_err()
        );
    }
}
