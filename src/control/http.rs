//! The control plane's HTTP client: requests to routers and nodes over
//! `http://` or `https://` (verified against the system's roots), each
//! bounded by a timeout; [`HttpClient::send`] hands back the answer's body
//! as a stream, for answers too large to hold.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::tls::Trust;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Largest answer body read whole.
const MAX_BODY: usize = 64 << 20;

/// A client for `http://` and `https://` URLs.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}

impl HttpClient {
    pub fn new() -> Result<HttpClient, String> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(5)));
        let tls = Trust::System
            .client_config()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HttpClient { client })
    }

    /// Sends `request` and returns the answer once its head has arrived
    /// (within `timeout`); the body is read by the caller.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<http::Response<Incoming>, String> {
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    /// `GET url`: the status and the whole body, within `timeout`.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<(StatusCode, Bytes), String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        let request = Request::get(uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("invalid request to {url}: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| describe(&e))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("answer unreadable: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }
}

/// Reads a whole (small) answer body, at most `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, String> {
    Ok(http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| format!("answer unreadable: {e}"))?
        .to_bytes())
}

/// The most specific message of an error chain ("connection refused").
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        message = inner.to_string();
        source = inner.source();
    }
    message
}
