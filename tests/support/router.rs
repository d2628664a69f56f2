//! Starting the real router in-process for a test, on 127.0.0.1:0.
//!
//! [`RouterBuilder`] writes a TOML configuration (so every test also goes
//! through the same parsing and validation as a config file), and
//! [`TestRouter`] wraps the running router with a small HTTP client.
//! Health checks run every 100 ms with one failure or success deciding, so
//! tests see a node's state change quickly.

use std::time::Duration;

use std::io::Write;

use influxdb_router::config::Config;
use influxdb_router::server::{self, RunningRouter};
use serde_json::Value;

/// Builds a router configuration from nodes and per-section keys.
#[derive(Debug, Default, Clone)]
pub struct RouterBuilder {
    nodes: Vec<String>,
    server: Vec<String>,
    write: Vec<String>,
    health: Vec<String>,
    buffer: Vec<String>,
    cluster: Vec<String>,
    metrics: Vec<String>,
    limits: Vec<String>,
}

impl RouterBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A read-write node.
    pub fn node(self, name: &str, url: &str) -> Self {
        self.node_mode(name, url, "read-write")
    }

    pub fn node_mode(mut self, name: &str, url: &str, mode: &str) -> Self {
        self.nodes.push(format!(
            "{{ name = \"{name}\", url = \"{url}\", mode = \"{mode}\" }}"
        ));
        self
    }

    /// A `[server]` key; `value` is TOML (strings quoted).
    pub fn server(mut self, key: &str, value: &str) -> Self {
        self.server.push(format!("{key} = {value}"));
        self
    }

    pub fn write(mut self, key: &str, value: &str) -> Self {
        self.write.push(format!("{key} = {value}"));
        self
    }

    pub fn health(mut self, key: &str, value: &str) -> Self {
        self.health.push(format!("{key} = {value}"));
        self
    }

    /// A `[buffer]` key; without `dir`, queues go to a temporary directory
    /// that lives as long as the [`TestRouter`].
    pub fn buffer(mut self, key: &str, value: &str) -> Self {
        self.buffer.push(format!("{key} = {value}"));
        self
    }

    pub fn cluster(mut self, key: &str, value: &str) -> Self {
        self.cluster.push(format!("{key} = {value}"));
        self
    }

    /// A `[metrics]` key; `value` is TOML (strings quoted).
    pub fn metrics(mut self, key: &str, value: &str) -> Self {
        self.metrics.push(format!("{key} = {value}"));
        self
    }

    /// A `[limits]` key; `value` is TOML (strings quoted).
    pub fn limits(mut self, key: &str, value: &str) -> Self {
        self.limits.push(format!("{key} = {value}"));
        self
    }

    /// The configuration text. Unless a test sets its own, writes use
    /// consistency `all`, so that a 204 means every node has the data.
    pub fn toml(&self) -> String {
        let mut write = self.write.clone();
        if !write.iter().any(|line| line.starts_with("consistency ")) {
            write.push("consistency = \"all\"".to_string());
        }
        let mut health = vec![
            "interval = \"100ms\"".to_string(),
            "timeout = \"500ms\"".to_string(),
            "unhealthy_after = 1".to_string(),
            "healthy_after = 1".to_string(),
        ];
        health.retain(|line| {
            !self
                .health
                .iter()
                .any(|h| h.split(' ').next() == line.split(' ').next())
        });
        health.extend(self.health.iter().cloned());
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n{}\n[write]\n{}\n[health]\n{}\n[buffer]\n{}\n[metrics]\n{}\n[limits]\n{}\n[[cluster]]\nname = \"main\"\n{}\nnodes = [\n  {}\n]\n",
            self.server.join("\n"),
            write.join("\n"),
            health.join("\n"),
            self.buffer.join("\n"),
            self.metrics.join("\n"),
            self.limits.join("\n"),
            self.cluster.join("\n"),
            self.nodes.join(",\n  ")
        )
    }

    /// Parses the configuration and starts the router.
    pub async fn start(mut self) -> TestRouter {
        let mut buffer_dir = None;
        if !self.buffer.iter().any(|line| line.starts_with("dir ")) {
            let dir = tempfile::Builder::new()
                .prefix("router-queues-")
                .tempdir()
                .expect("temp dir for queues");
            self.buffer
                .push(format!("dir = {:?}", dir.path().display().to_string()));
            buffer_dir = Some(dir);
        }
        let text = self.toml();
        let config = Config::from_toml_str(&text, "test.toml")
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
        let router = server::spawn(config, "test")
            .await
            .expect("router starts on 127.0.0.1:0");
        TestRouter {
            router,
            client: reqwest::Client::new(),
            _buffer_dir: buffer_dir,
        }
    }
}

/// A running router and a client for it.
#[derive(Debug)]
pub struct TestRouter {
    pub router: RunningRouter,
    pub client: reqwest::Client,
    _buffer_dir: Option<tempfile::TempDir>,
}

/// Status and body text of an answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `error` of an InfluxDB-shaped error answer.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {}", self.body))
            .to_string()
    }
}

impl TestRouter {
    pub fn url(&self) -> String {
        self.router.url()
    }

    async fn answer(request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("router answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("router body");
        Answer {
            status,
            headers,
            body,
        }
    }

    /// `POST /write?{params}` with `body`.
    pub async fn write(&self, params: &str, body: impl Into<reqwest::Body>) -> Answer {
        Self::answer(
            self.client
                .post(format!("{}/write?{params}", self.url()))
                .body(body),
        )
        .await
    }

    /// `POST /query` with `q` (and `db`) in a form body.
    pub async fn query(&self, q: &str, db: Option<&str>) -> Answer {
        let mut form = vec![("q", q)];
        if let Some(db) = db {
            form.push(("db", db));
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = self.client.post(format!("{}/query", self.url()));
        Self::answer(
            request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }

    /// `GET {path_and_query}`.
    pub async fn get(&self, path_and_query: &str) -> Answer {
        Self::answer(self.client.get(format!("{}{path_and_query}", self.url()))).await
    }

    /// Waits until `/status` shows `node` with the given health.
    pub async fn wait_for_health(&self, node: &str, healthy: bool) {
        let want = if healthy { "healthy" } else { "unhealthy" };
        let ok = super::wait_until(Duration::from_secs(10), || async {
            let status = self.get("/status").await.json();
            let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
            nodes
                .iter()
                .any(|n| n["name"] == node && n["health"] == want)
        })
        .await;
        assert!(ok, "node {node} did not become {want}");
    }
}

/// Two real `influxd` nodes and a router in front of them.
pub async fn two_influxd() -> (super::Influxd, super::Influxd, TestRouter) {
    let (a, b) = (super::Influxd::start(), super::Influxd::start());
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .start()
        .await;
    (a, b, router)
}

/// `data` gzip-compressed.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

impl TestRouter {
    /// `POST {path_and_query}` with a gzip-encoded `body` (sent as given).
    pub async fn post_gzip(&self, path_and_query: &str, body: Vec<u8>) -> reqwest::Response {
        let request = self.client.post(format!("{}{path_and_query}", self.url()));
        request
            .header("content-encoding", "gzip")
            .body(body)
            .send()
            .await
            .expect("router answers")
    }
}
