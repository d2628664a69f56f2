//! Test certificates and an HTTPS client, for the TLS tests.
//!
//! [`TestPki`] generates (with `rcgen`, in a temporary directory) a
//! certificate authority, a server certificate for `localhost` and
//! `127.0.0.1` signed by it, and a second, unrelated authority for the
//! "wrong CA" cases; all as PEM files.
//!
//! [`HttpsClient`] is a small hyper client over rustls (ring provider) that
//! trusts only the certificates of one CA file. reqwest is not used for
//! HTTPS: its rustls backend either builds aws-lc-rs or needs a process-wide
//! crypto provider installed before *every* reqwest client of the test
//! binary, plain-HTTP ones included.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tempfile::TempDir;

/// A CA, a server certificate signed by it, and an unrelated CA, as PEM files.
pub struct TestPki {
    dir: TempDir,
}

impl TestPki {
    /// Generates everything into a new temporary directory.
    pub fn generate() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("router-tls-")
            .tempdir()
            .expect("temp dir for certificates");
        let write = |name: &str, text: String| {
            fs::write(dir.path().join(name), text).expect("cannot write a test certificate")
        };
        let (ca, ca_key) = authority("influxdb-router test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("self-signed test CA");
        write("ca.pem", ca_cert.pem());
        let issuer = Issuer::new(ca, ca_key);
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut server = CertificateParams::new(names).expect("server certificate names");
        server
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .expect("server certificate signed by the test CA");
        write("server.pem", server_cert.pem());
        write("server-key.pem", server_key.serialize_pem());
        let (other, other_key) = authority("some other CA");
        let other_cert = other.self_signed(&other_key).expect("other CA");
        write("other-ca.pem", other_cert.pem());
        TestPki { dir }
    }

    /// The CA that signed [`server_cert`](Self::server_cert).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `localhost` and `127.0.0.1`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The private key of [`server_cert`](Self::server_cert) (PKCS#8).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server-key.pem")
    }

    /// A CA that signed nothing of the above.
    pub fn other_ca_cert(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn authority(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, KeyPair::generate().expect("CA key"))
}

/// A rustls client configuration trusting only the certificates in `ca`.
pub fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("readable CA file") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a usable CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// An HTTPS-only client trusting one CA; connections are not pooled, so it
/// may outlive the runtime that first used it.
#[derive(Clone)]
pub struct HttpsClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Status and body text of an answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl HttpsClient {
    /// A client that trusts only the certificates in the PEM file `ca`.
    pub fn trusting(ca: &Path) -> HttpsClient {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*client_config(ca)).clone())
            .https_only()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        HttpsClient { client }
    }

    /// `GET url`; `Err` with the most specific message when there is no answer.
    pub async fn get(&self, url: &str) -> Result<Answer, String> {
        let request = http::Request::get(url)
            .body(Full::default())
            .map_err(|e| e.to_string())?;
        self.send(request).await
    }

    /// `POST url` with `body` and, if given, a `Content-Type`.
    pub async fn post(
        &self,
        url: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        let mut request = http::Request::post(url);
        if let Some(content_type) = content_type {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        self.send(request).await
    }

    /// `POST /query` with `q` (and `db`) as a form.
    pub async fn query(&self, base: &str, q: &str, db: Option<&str>) -> Result<Answer, String> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("q", q);
        if let Some(db) = db {
            form.append_pair("db", db);
        }
        let url = format!("{base}/query");
        let form = form.finish();
        self.post(&url, Some("application/x-www-form-urlencoded"), form)
            .await
    }

    async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<Answer, String> {
        let pending = self.client.request(request);
        let response = tokio::time::timeout(Duration::from_secs(30), pending)
            .await
            .map_err(|_| "no answer within 30 s".to_owned())?
            .map_err(|e| innermost(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// The whole chain of an error, outermost first.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(inner) = source {
        parts.push(inner.to_string());
        source = inner.source();
    }
    parts.join(": ")
}
