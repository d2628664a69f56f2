//! The configuration exactly as written: TOML text to loosely typed structs.
//!
//! Every leaf is a `String`, an integer or a raw TOML value, so a malformed
//! duration or URL is a validation problem rather than a parse failure that
//! would hide everything after it. Each table is deserialized on its own; when
//! serde refuses a key (unknown, or of the wrong TOML type), the key is
//! reported, dropped, and the table is tried again, so one bad key never
//! hides the others.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub server: Option<toml::Table>,
    pub write: Option<toml::Table>,
    pub health: Option<toml::Table>,
    pub buffer: Option<toml::Table>,
    pub routing: Option<toml::Table>,
    pub cluster: Option<Vec<toml::Table>>,
    pub route: Option<Vec<toml::Table>>,
    #[serde(rename = "move")]
    pub moves: Option<Vec<toml::Table>>,
    pub metrics: Option<toml::Table>,
    pub log: Option<toml::Table>,
    pub control: Option<toml::Table>,
    pub limits: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub bind: Option<String>,
    pub max_body_size: Option<toml::Value>,
    pub read_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub shutdown_timeout: Option<String>,
    pub udp_bind: Option<String>,
    pub udp_database: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWrite {
    pub consistency: Option<String>,
    pub timeout: Option<String>,
    pub coalesce_delay: Option<String>,
    pub coalesce_max_bytes: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub auto_recover: Option<bool>,
    pub job_lock_ttl: Option<String>,
    pub max_attempts: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub client_requests: Option<toml::Value>,
    pub client_bytes: Option<toml::Value>,
    pub user_bytes: Option<toml::Value>,
    pub database_bytes: Option<toml::Table>,
    pub client_queries: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub prometheus: Option<bool>,
    pub self_database: Option<String>,
    pub self_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub unhealthy_after: Option<i64>,
    pub healthy_after: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBuffer {
    pub dir: Option<String>,
    pub max_size_per_node: Option<toml::Value>,
    pub on_full: Option<String>,
    pub fsync: Option<String>,
    pub retry_min: Option<String>,
    pub retry_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    pub default_cluster: Option<String>,
    pub source: Option<String>,
    pub watch: Option<bool>,
    pub dns_servers: Option<Vec<String>>,
    pub redis_url: Option<String>,
    pub key_prefix: Option<String>,
    pub amqp_url: Option<String>,
    pub poll_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub name: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub nodes: Option<Vec<toml::Table>>,
    pub srv: Option<String>,
    pub srv_interval: Option<String>,
    pub scheme: Option<String>,
    pub read_url: Option<String>,
    pub ca_file: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub database: Option<String>,
    pub measurement: Option<String>,
    pub cluster: Option<String>,
    pub shard: Option<Vec<String>>,
    pub shard_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMove {
    pub database: Option<String>,
    pub measurement: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub state: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub name: Option<String>,
    pub url: Option<String>,
    pub mode: Option<String>,
}

/// Parses TOML text into the top-level raw structure. A syntax error is the
/// only problem reported, since nothing after it can be trusted.
pub(crate) fn parse(text: &str, problems: &mut Problems) -> Option<RawConfig> {
    match toml::from_str::<toml::Table>(text) {
        Ok(table) => Some(table_into(table, "", problems)),
        Err(err) => {
            problems.push("", syntax_message(text, &err));
            None
        }
    }
}

/// `TOML parse error at line L, column C: message`, on one line.
fn syntax_message(text: &str, err: &toml::de::Error) -> String {
    let message = err.message();
    let Some(span) = err.span() else {
        return format!("TOML parse error: {message}");
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("TOML parse error at line {line}, column {column}: {message}")
}

/// Deserializes one table into `T`, whose fields must all be optional. Keys
/// serde refuses are reported under `path` and dropped; what remains is
/// returned, so the result is always usable.
pub(crate) fn table_into<T>(mut table: toml::Table, path: &str, problems: &mut Problems) -> T
where
    T: DeserializeOwned + Default,
{
    loop {
        let err = match T::deserialize(toml::Value::Table(table.clone())) {
            Ok(value) => return value,
            Err(err) => err,
        };
        let (key, message) = refused_key(&err);
        match key.filter(|k| table.contains_key(k.as_str())) {
            Some(key) => {
                problems.push(&join(path, &key), message);
                table.remove(&key);
            }
            None => {
                problems.push(path, message);
                return T::default();
            }
        }
    }
}

/// Which key of the table serde refused, and why, in lowercase.
fn refused_key(err: &toml::de::Error) -> (Option<String>, String) {
    let message = err.message();
    if let Some(name) = between(message, "unknown field `", "`") {
        let expected = message.split_once("`, ").map_or("", |(_, rest)| rest);
        let message = match expected {
            "" => "unknown key".to_owned(),
            expected => format!("unknown key, {expected}"),
        };
        return (Some(name.to_owned()), message);
    }
    // The value deserializer appends the key path as a last line: "in `key`".
    let text = err.to_string();
    let key = text
        .lines()
        .last()
        .and_then(|line| between(line, "in `", "`"))
        .map(|path| path.split(['.', '[']).next().unwrap_or(path).to_owned());
    let message = message.replace("expected i64", "expected a whole number");
    (key, message)
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// Joins a key path and a child key: `join("server", "bind")`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Vec<String> {
        let mut problems = Problems::new("f.toml");
        if let Some(raw) = parse(text, &mut problems) {
            if let Some(server) = raw.server {
                let _: RawServer = table_into(server, "server", &mut problems);
            }
        }
        let err = problems.into_error();
        err.problems().iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn every_unknown_key_in_a_table_is_reported() {
        let problems = problems_of("[server]\nsrv = 1\nbind = 'x'\nport = 2\n");
        assert_eq!(problems.len(), 2, "{problems:?}");
        // Tables keep the order of the file (toml's preserve_order).
        assert!(problems[0].starts_with("f.toml: server.srv: unknown key, expected one of `bind`"));
        assert!(problems[1].starts_with("f.toml: server.port: unknown key, expected one of `bind`"));
    }

    #[test]
    fn wrong_toml_types_name_their_key_and_do_not_hide_others() {
        let problems = problems_of("[server]\nbind = 5\nread_timeout = 10\n");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("f.toml: server.bind: invalid type"));
        assert!(problems[1].starts_with("f.toml: server.read_timeout: invalid type"));
    }

    #[test]
    fn unknown_top_level_tables_are_reported() {
        let problems = problems_of("[metric]\nsize = 1\n[[rule]]\nx = 1\n");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("f.toml: metric: unknown key, expected one of `server`"));
        assert!(problems[1].starts_with("f.toml: rule: unknown key, expected one of `server`"));
    }

    #[test]
    fn syntax_errors_carry_line_and_column_on_one_line() {
        let problems = problems_of("[server]\nbind = \n");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("f.toml: TOML parse error at line 2, column 8: "),
            "{problems:?}"
        );
        assert!(!problems[0].contains('\n'));
    }
}
