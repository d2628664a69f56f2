//! `admin status`: asks one or more routers for their `/status` and shows
//! them as one readable table (or one JSON document with `--json`): per
//! router its version, uptime and routing source and version; per node its
//! cluster, mode, health, queue (bytes, records, age of the oldest record),
//! replay rate and last error. A router that does not answer is a row that
//! says so, and makes the command fail (exit status 1). Then the jobs
//! (running, waiting, the last failures) from the job queue's Redis, when it
//! can be reached.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::HttpClient;
use super::ControlError;
use crate::config::Config;

/// How long one router may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What the routers said.
#[derive(Debug)]
pub struct Report {
    /// Per router: its URL and its `/status`, or why there is none.
    pub routers: Vec<(String, Result<Value, String>)>,
    /// The newest job records, or why they could not be read.
    pub jobs: Result<Vec<super::jobs::store::Record>, String>,
}

/// How many of the newest jobs the status looks at.
const JOBS_SHOWN: usize = 50;

impl Report {
    /// Whether every router answered.
    pub fn complete(&self) -> bool {
        self.routers.iter().all(|(_, status)| status.is_ok())
    }

    /// One JSON document: `{"routers":[{"url":…,"status":{…}} | {"url":…,"error":"…"}]}`.
    pub fn json(&self) -> Value {
        let routers: Vec<Value> = self
            .routers
            .iter()
            .map(|(url, status)| match status {
                Ok(status) => json!({ "url": url, "status": status }),
                Err(error) => json!({ "url": url, "error": error }),
            })
            .collect();
        let jobs = match &self.jobs {
            Ok(records) => Value::from(
                records
                    .iter()
                    .filter(|r| shown_job(r))
                    .map(super::jobs::commands::record_json)
                    .collect::<Vec<_>>(),
            ),
            Err(e) => json!({ "error": e }),
        };
        json!({ "routers": routers, "jobs": jobs })
    }

    /// The readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (url, status) in &self.routers {
            match status {
                Ok(status) => router_section(&mut out, url, status),
                Err(error) => {
                    let _ = writeln!(out, "router {url}: NOT ANSWERING: {error}\n");
                }
            }
        }
        match &self.jobs {
            Ok(records) => {
                let shown: Vec<_> = records.iter().filter(|r| shown_job(r)).cloned().collect();
                if shown.is_empty() {
                    out.push_str("jobs: none running, waiting or recently failed\n");
                } else {
                    out.push_str("jobs (running, waiting, last failures):\n");
                    out.push_str(&super::jobs::commands::table(&shown));
                }
            }
            Err(e) => {
                let _ = writeln!(out, "jobs: not shown ({e})");
            }
        }
        out
    }
}

/// The router this configuration runs: its `[server] bind`, on loopback
/// when it binds every address.
pub fn default_router(config: &Config) -> String {
    let mut addr = config.server.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

/// Asks each router in `routers` (the configuration's own when empty).
pub async fn status(config: &Config, routers: &[String]) -> Result<Report, ControlError> {
    let client = HttpClient::new().map_err(ControlError::Failed)?;
    let urls: Vec<String> = if routers.is_empty() {
        vec![default_router(config)]
    } else {
        routers
            .iter()
            .map(|r| r.trim_end_matches('/').to_string())
            .collect()
    };
    let asked = urls.iter().map(|url| ask(&client, url));
    let answers = futures_util::future::join_all(asked).await;
    Ok(Report {
        routers: urls.into_iter().zip(answers).collect(),
        jobs: jobs(config).await,
    })
}

/// The newest job records from the configuration's Redis.
async fn jobs(config: &Config) -> Result<Vec<super::jobs::store::Record>, String> {
    let routing = &config.routing;
    let store = tokio::time::timeout(
        Duration::from_secs(2),
        super::jobs::store::Store::connect(&routing.redis_url, &routing.key_prefix),
    )
    .await
    .map_err(|_| format!("Redis at {} did not answer", routing.redis_url))?
    .map_err(|e| e.to_string())?;
    store.list(JOBS_SHOWN).await.map_err(|e| e.to_string())
}

/// Running and waiting jobs, and failures (of the newest jobs).
fn shown_job(record: &super::jobs::store::Record) -> bool {
    matches!(
        record.get("state").map(String::as_str),
        Some("running" | "waiting" | "retrying" | "failed")
    )
}

async fn ask(client: &HttpClient, url: &str) -> Result<Value, String> {
    let (status, body) = client.get(&format!("{url}/status"), TIMEOUT).await?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(format!(
            "answered {status}: {}",
            crate::protocol::response::truncate(text.trim(), 200)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("answer is not JSON: {e}"))
}

fn router_section(out: &mut String, url: &str, status: &Value) {
    let routing = &status["routing"];
    let _ = writeln!(
        out,
        "router {url}: version {}, up {}, routing {} version {}",
        text(&status["version"]),
        duration(status["uptime_seconds"].as_u64().unwrap_or(0)),
        text(&routing["source"]),
        text(&routing["version"]),
    );
    let header = [
        "CLUSTER",
        "NODE",
        "MODE",
        "HEALTH",
        "QUEUE",
        "RECORDS",
        "OLDEST",
        "REPLAY/S",
        "LAST ERROR",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    let mut overrides = Vec::new();
    for node in status["nodes"].as_array().into_iter().flatten() {
        rows.push(node_row(node));
        overrides.extend(override_line(node));
    }
    out.push_str(&columns(&rows));
    if !overrides.is_empty() {
        let version = text(&routing["overrides_version"]);
        let _ = writeln!(out, "node mode overrides (version {version}):");
        for line in overrides {
            let _ = writeln!(out, "  {line}");
        }
    }
    out.push('\n');
    let moves = routing["moves"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !moves.is_empty() {
        let mut rows = vec![["DATABASE", "MEASUREMENT", "FROM", "TO", "STATE"]
            .map(String::from)
            .to_vec()];
        for m in moves {
            let measurement = match &m["measurement"] {
                Value::Null => "*".to_string(),
                other => text(other),
            };
            rows.push(vec![
                text(&m["database"]),
                measurement,
                text(&m["from"]),
                text(&m["to"]),
                text(&m["state"]),
            ]);
        }
        out.push_str("moves:\n");
        out.push_str(&columns(&rows));
        out.push('\n');
    }
}

/// `main/b: write-only since 2026-…Z (source redis): reason`, for a node
/// whose mode an override sets.
fn override_line(node: &Value) -> Option<String> {
    let found = node.get("override").filter(|o| o.is_object())?;
    let since = found["since_ns"]
        .as_i64()
        .map(super::time::format_time)
        .unwrap_or_else(|| "-".into());
    Some(format!(
        "{}/{}: {} since {since} (source {}): {}",
        text(&node["cluster"]),
        text(&node["name"]),
        text(&found["mode"]),
        text(&found["source"]),
        text(&found["reason"]),
    ))
}

fn node_row(node: &Value) -> Vec<String> {
    let queue = &node["queue"];
    let oldest = queue["oldest_record_age_seconds"]
        .as_f64()
        .map(|s| duration(s as u64))
        .unwrap_or_else(|| "-".into());
    let error = node["last_error"]
        .as_str()
        .or_else(|| queue["last_error"].as_str())
        .unwrap_or("-");
    vec![
        text(&node["cluster"]),
        text(&node["name"]),
        text(&node["mode"]),
        text(&node["health"]),
        bytes(queue["bytes"].as_u64().unwrap_or(0)),
        text(&queue["records"]),
        oldest,
        format!("{:.0}", queue["replay_rate"].as_f64().unwrap_or(0.0)),
        crate::protocol::response::truncate(error, 60),
    ]
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `3d4h`, `5h12m`, `7m3s`, `42s`.
fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`, `1.0 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_like_an_operator_writes_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(423), "7m3s");
        assert_eq!(duration(3 * 3600 + 120), "3h2m");
        assert_eq!(duration(2 * 86_400 + 3600), "2d1h");
    }

    #[test]
    fn a_router_that_does_not_answer_is_a_row_and_makes_the_report_incomplete() {
        let status = json!({
            "version": "0.1.0", "uptime_seconds": 65,
            "routing": { "source": "file /etc/r.toml", "version": 3,
                         "moves": [{ "database": "big", "measurement": "cpu", "from": "main",
                                     "to": "k8s", "state": "copying" },
                                   { "database": "big", "measurement": null, "from": "k8s",
                                     "to": "main", "state": "done" }] },
            "nodes": [{ "cluster": "main", "name": "a", "mode": "read-write", "health": "healthy",
                        "last_error": null,
                        "queue": { "bytes": 2048, "records": 2, "oldest_record_age_seconds": 3.5,
                                   "replay_rate": 10.0, "last_error": null } }]
        });
        let report = Report {
            routers: vec![
                ("http://r1:5096".into(), Ok(status)),
                ("http://r2:5096".into(), Err("connection refused".into())),
            ],
            jobs: Ok(vec![
                [
                    ("id", "j1"),
                    ("kind", "backfill"),
                    ("state", "running"),
                    ("worker", "w1"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                [("id", "j0"), ("kind", "verify"), ("state", "done")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ]),
        };
        assert!(!report.complete());
        let table = report.table();
        assert!(
            table.contains(
                "router http://r1:5096: version 0.1.0, up 1m5s, routing file /etc/r.toml version 3"
            ),
            "{table}"
        );
        assert!(
            table.contains("main     a     read-write  healthy  2.0 KiB  2        3s      10"),
            "{table}"
        );
        assert!(
            table.contains("router http://r2:5096: NOT ANSWERING: connection refused"),
            "{table}"
        );
        assert!(
            table.contains("moves:\nDATABASE  MEASUREMENT  FROM  TO    STATE")
                && table.contains("big       cpu          main  k8s   copying")
                && table.contains("big       *            k8s   main  done"),
            "{table}"
        );
        assert_eq!(report.json()["routers"][1]["error"], "connection refused");
        // running jobs are listed, finished ones are not
        assert!(
            table.contains("jobs (running, waiting, last failures):"),
            "{table}"
        );
        assert!(table.contains("j1  backfill  running  w1"), "{table}");
        assert!(!table.contains("j0"), "{table}");
        assert_eq!(report.json()["jobs"][0]["id"], "j1");
    }

    #[test]
    fn an_overridden_node_is_listed_with_its_override() {
        let node = |name: &str, over: Value| {
            json!({ "cluster": "main", "name": name, "mode": "write-only", "health": "healthy",
                    "override": over, "queue": { "bytes": 0, "records": 0 } })
        };
        let status = json!({
            "version": "0.1.0", "uptime_seconds": 1,
            "routing": { "source": "file", "version": 1, "overrides_version": 7 },
            "nodes": [
                node("a", Value::Null),
                node("b", json!({ "mode": "write-only", "reason": "recover-node job j1",
                                   "since_ns": 1_700_000_000_000_000_000i64, "source": "redis" })),
            ]
        });
        let report = Report {
            routers: vec![("http://r1:5096".into(), Ok(status))],
            jobs: Ok(vec![]),
        };
        let table = report.table();
        assert!(
            table.contains("node mode overrides (version 7):"),
            "{table}"
        );
        assert!(
            table.contains("  main/b: write-only since 2023-11-14T22:13:20Z (source redis): recover-node job j1"),
            "{table}"
        );
        assert!(!table.contains("main/a:"), "{table}");
    }

    #[test]
    fn the_default_router_is_the_configurations_own_listener_on_loopback() {
        let config = Config::embedded_default();
        assert_eq!(default_router(&config), "http://127.0.0.1:5096");
    }
}
