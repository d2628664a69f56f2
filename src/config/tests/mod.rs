//! Tests for the whole pipeline: TOML text in, `Config` or problems out.

use super::*;

mod clusters;
mod routes;

const ONE_NODE: &str = r#"
[[cluster]]
name = "main"
nodes = [{ name = "a", url = "http://127.0.0.1:8086" }]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "test.toml")
}

/// Parses `extra` followed by a valid one-node cluster.
fn with_cluster(extra: &str) -> Result<Config, ConfigError> {
    parse(&format!("{extra}\n{ONE_NODE}"))
}

fn problems(result: Result<Config, ConfigError>) -> Vec<(String, String)> {
    let err = result.expect_err("the config should be refused");
    err.problems()
        .iter()
        .map(|p| (p.key.clone(), p.message.clone()))
        .collect()
}

/// The single problem of a refused config, as (key, message).
fn only_problem(result: Result<Config, ConfigError>) -> (String, String) {
    let mut all = problems(result);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn node_url(url: &str) -> Result<Config, ConfigError> {
    parse(&format!(
        "[[cluster]]\nname = \"c\"\nnodes = [{{ name = \"a\", url = {url:?} }}]\n"
    ))
}

#[test]
fn embedded_default_is_valid() {
    let config = Config::embedded_default();
    assert_eq!(config.server.bind, "0.0.0.0:5096".parse().unwrap());
    assert_eq!(config.clusters.len(), 1);
    assert_eq!(config.clusters[0].name, "default");
    assert_eq!(config.clusters[0].nodes[0].url, "http://127.0.0.1:8086");
    assert_eq!(config.routing.default_cluster, "default");
    assert_eq!(config.node_count(), 1);
}

#[test]
fn omitted_keys_take_their_documented_defaults() {
    let config = with_cluster("").unwrap();
    assert_eq!(config.server.max_body_size, 64 << 20);
    assert_eq!(config.server.read_timeout, Duration::from_secs(30));
    assert_eq!(config.server.max_connections, 4096);
    assert_eq!(config.server.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(config.write.consistency, Consistency::Any);
    assert_eq!(config.write.timeout, Duration::from_secs(10));
    assert_eq!(
        config.buffer.dir,
        std::path::PathBuf::from(crate::config::DEFAULT_BUFFER_DIR)
    );
    assert_eq!(config.buffer.max_size_per_node, 1 << 30);
    assert_eq!(config.buffer.on_full, crate::config::OnFull::Reject);
    assert_eq!(config.buffer.fsync, crate::config::FsyncPolicy::Batch);
    assert_eq!(config.buffer.retry_min, Duration::from_millis(100));
    assert_eq!(config.buffer.retry_max, Duration::from_secs(30));
    assert_eq!(config.health.interval, Duration::from_secs(5));
    assert_eq!(config.health.timeout, Duration::from_secs(2));
    assert_eq!(
        (config.health.unhealthy_after, config.health.healthy_after),
        (2, 2)
    );
    assert_eq!(config.clusters[0].nodes[0].mode, NodeMode::ReadWrite);
}

#[test]
fn sizes_may_be_strings_or_integers_of_bytes() {
    let config = with_cluster("[server]\nmax_body_size = \"10MB\"").unwrap();
    assert_eq!(config.server.max_body_size, 10_000_000);
    let config = with_cluster("[server]\nmax_body_size = 1024").unwrap();
    assert_eq!(config.server.max_body_size, 1024);
}

#[test]
fn bad_duration_names_its_key() {
    let (key, message) = only_problem(with_cluster("[write]\ntimeout = \"10 seconds\""));
    assert_eq!(key, "write.timeout");
    assert!(
        message.contains("\"10 seconds\"") && message.contains("\"250ms\""),
        "{message}"
    );
}

#[test]
fn zero_durations_and_counts_are_refused_where_they_must_be_positive() {
    let text = "[health]\ninterval = \"0s\"\nunhealthy_after = 0\n[server]\nmax_body_size = 0";
    let keys: Vec<_> = problems(with_cluster(text))
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(
        keys,
        [
            "server.max_body_size",
            "health.interval",
            "health.unhealthy_after"
        ]
    );
}

#[test]
fn shutdown_timeout_may_be_zero() {
    let config = with_cluster("[server]\nshutdown_timeout = \"0s\"").unwrap();
    assert_eq!(config.server.shutdown_timeout, Duration::ZERO);
}

#[test]
fn bad_bind_address_quotes_the_value() {
    let (key, message) = only_problem(with_cluster("[server]\nbind = \"localhost\""));
    assert_eq!(key, "server.bind");
    assert!(message.contains("\"localhost\""), "{message}");
}

#[test]
fn buffer_keys_are_read_with_their_units() {
    let text = "[buffer]\ndir = \"/q\"\nmax_size_per_node = \"10MB\"\non_full = \"drop-oldest\"\nfsync = \"always\"\nretry_min = \"1s\"\nretry_max = \"1m\"";
    let config = with_cluster(text).unwrap();
    assert_eq!(config.buffer.dir, std::path::PathBuf::from("/q"));
    assert_eq!(config.buffer.max_size_per_node, 10_000_000);
    assert_eq!(config.buffer.on_full, crate::config::OnFull::DropOldest);
    assert_eq!(config.buffer.fsync, crate::config::FsyncPolicy::Always);
    assert_eq!(
        (config.buffer.retry_min, config.buffer.retry_max),
        (Duration::from_secs(1), Duration::from_secs(60))
    );
}

#[test]
fn unknown_consistency_lists_the_valid_values() {
    let (_, message) = only_problem(with_cluster("[write]\nconsistency = \"most\""));
    assert!(
        message.contains("\"quorum\"") && message.contains("\"most\""),
        "{message}"
    );
    let config = with_cluster("[write]\nconsistency = \"quorum\"").unwrap();
    assert_eq!(config.write.consistency, Consistency::Quorum);
}

#[test]
fn consistency_parses_and_displays_lowercase() {
    for c in [
        Consistency::Any,
        Consistency::One,
        Consistency::Quorum,
        Consistency::All,
    ] {
        assert_eq!(c.to_string().parse::<Consistency>(), Ok(c));
    }
    let err = "ONE".parse::<Consistency>().unwrap_err();
    assert!(
        err.contains("\"any\", \"one\", \"quorum\" or \"all\""),
        "{err}"
    );
}

#[test]
fn node_modes_parse_display_and_say_what_they_accept() {
    for mode in NodeMode::ALL {
        assert_eq!(mode.to_string().parse::<NodeMode>(), Ok(mode));
    }
    let accepts = |m: NodeMode| (m.accepts_writes(), m.accepts_reads(), m.accepts_admin());
    assert_eq!(accepts(NodeMode::ReadWrite), (true, true, true));
    assert_eq!(accepts(NodeMode::WriteOnly), (true, false, true));
    assert_eq!(accepts(NodeMode::ReadOnly), (false, true, true));
    assert_eq!(accepts(NodeMode::Drain), (false, false, true));
    assert_eq!(accepts(NodeMode::Off), (false, false, false));
}

#[test]
fn secrets_are_masked_in_debug_and_display() {
    let text = "[[cluster]]\nname = \"c\"\nusername = \"u\"\npassword = \"hunter2\"\n\
                nodes = [{ name = \"a\", url = \"http://a:8086\" }]";
    let config = parse(text).unwrap();
    let password = config.clusters[0].password.as_ref().unwrap();
    assert_eq!(password.expose(), "hunter2");
    assert_eq!(format!("{password} {password:?}"), "*** ***");
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn the_only_cluster_is_the_default_cluster() {
    assert_eq!(with_cluster("").unwrap().routing.default_cluster, "main");
}

#[test]
fn default_cluster_is_required_with_several_clusters() {
    let text = format!(
        "{ONE_NODE}[[cluster]]\nname = \"other\"\nnodes = [{{ name = \"b\", url = \"http://b\" }}]"
    );
    let (key, message) = only_problem(parse(&text));
    assert_eq!(key, "routing.default_cluster");
    assert!(message.contains("\"main\", \"other\""), "{message}");
    let config = parse(&format!("[routing]\ndefault_cluster = \"other\"\n{text}")).unwrap();
    assert_eq!(config.cluster("other").unwrap().nodes[0].name, "b");
}

#[test]
fn default_cluster_must_name_an_existing_cluster() {
    let (key, message) = only_problem(with_cluster("[routing]\ndefault_cluster = \"nope\""));
    assert_eq!(key, "routing.default_cluster");
    assert!(message.contains("\"nope\""), "{message}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = "[server]\nread_timeout = \"soon\"\nsrv = 1\n\
                [[cluster]]\nname = \"c\"\nnodes = [\n\
                { name = \"a\", url = \"ftp://x\" },\n\
                { name = \"a\", url = \"http://b/path\" },\n]";
    let keys: Vec<_> = problems(parse(text)).into_iter().map(|p| p.0).collect();
    assert_eq!(
        keys,
        [
            "server.srv",
            "server.read_timeout",
            "cluster[0].nodes[0].url",
            "cluster[0].nodes[1].name",
            "cluster[0].nodes[1].url",
        ]
    );
}

#[test]
fn error_display_names_file_key_and_problem() {
    let err = node_url("ftp://x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "test.toml: cluster[0].nodes[0].url: expected an http:// or https:// URL with a host, got \"ftp://x\""
    );
}

#[test]
fn missing_file_names_the_path() {
    let path = Path::new("/nonexistent/router.toml");
    let err = load_from(Some(path), None).unwrap_err();
    assert!(
        err.to_string().starts_with("/nonexistent/router.toml: "),
        "{err}"
    );
}

#[test]
fn lookup_prefers_cli_then_env_then_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.toml");
    std::fs::write(&path, ONE_NODE).unwrap();
    let env = Some(OsString::from("/nonexistent/env.toml"));

    let loaded = load_from(Some(&path), env.clone()).unwrap();
    assert_eq!(
        loaded.source.to_string(),
        format!("file {}", path.display())
    );
    assert!(load_from(None, env).is_err());
    let loaded = load_from(None, Some(path.clone().into_os_string())).unwrap();
    let expected = format!("file {} (from $INFLUXDB_ROUTER_CONFIG)", path.display());
    assert_eq!(loaded.source.to_string(), expected);
    let loaded = load_from(None, Some(OsString::new())).unwrap();
    assert_eq!(loaded.source.to_string(), "embedded default");
    assert_eq!(loaded.config.clusters[0].name, "default");
}

#[test]
fn redis_source_keys_have_defaults_and_are_checked() {
    let config = with_cluster("[routing]\nsource = \"redis\"").unwrap();
    let routing = &config.routing;
    assert_eq!(routing.source, RoutingSource::Redis);
    assert_eq!(routing.redis_url, "redis://127.0.0.1:6379/0");
    assert_eq!(routing.key_prefix, "influxdb-router");
    assert_eq!(routing.amqp_url, "amqp://guest:guest@127.0.0.1:5672/%2f");
    assert_eq!(routing.poll_interval, Duration::from_secs(30));
    let all = problems(with_cluster(
        "[routing]\nsource = \"redis\"\nredis_url = \"http://x\"\namqp_url = \"x\"\nkey_prefix = \"\"\npoll_interval = \"0s\"",
    ));
    let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "routing.redis_url",
            "routing.amqp_url",
            "routing.key_prefix",
            "routing.poll_interval"
        ],
        "{all:?}"
    );
    let (key, _) = only_problem(with_cluster("[routing]\nsource = \"etcd\""));
    assert_eq!(key, "routing.source");
}

#[test]
fn control_keys_have_defaults_and_are_checked() {
    let config = with_cluster("").unwrap();
    assert!(!config.control.auto_recover);
    assert_eq!(config.control.job_lock_ttl, Duration::from_secs(30));
    assert_eq!(config.control.max_attempts, 3);
    let config =
        with_cluster("[control]\nauto_recover = true\njob_lock_ttl = \"1m\"\nmax_attempts = 5")
            .unwrap();
    assert!(config.control.auto_recover);
    assert_eq!(config.control.job_lock_ttl, Duration::from_secs(60));
    assert_eq!(config.control.max_attempts, 5);
    let all = problems(with_cluster(
        "[control]\njob_lock_ttl = \"0s\"\nmax_attempts = 0\nworkers = 2",
    ));
    let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "control.workers",
            "control.job_lock_ttl",
            "control.max_attempts"
        ],
        "{all:?}"
    );
}

#[test]
fn limits_are_all_off_by_default() {
    let config = with_cluster("").unwrap();
    assert!(config.limits.is_off());
    assert_eq!(config.limits.describe(), "off");
    assert!(with_cluster("[limits]").unwrap().limits.is_off());
}

#[test]
fn limits_take_rates_per_second_and_a_query_count() {
    let config = with_cluster(
        "[limits]\nclient_requests = \"2000/s\"\nclient_bytes = \"64MiB/s\"\nuser_bytes = \"1MB/s\"\n\
         database_bytes = { \"telemetry*\" = \"32MiB/s\", \"*\" = \"100KiB/s\" }\nclient_queries = 32",
    )
    .unwrap();
    let limits = &config.limits;
    assert_eq!(limits.client_requests, Some(2000));
    assert_eq!(limits.client_bytes, Some(64 << 20));
    assert_eq!(limits.user_bytes, Some(1_000_000));
    assert_eq!(limits.client_queries, Some(32));
    let globs: Vec<(&str, u64)> = limits
        .database_bytes
        .iter()
        .map(|(glob, rate)| (glob.as_str(), *rate))
        .collect();
    assert_eq!(globs, [("telemetry*", 32 << 20), ("*", 100 << 10)]);
    assert!(!limits.is_off());
    assert_eq!(
        limits.describe(),
        "client_requests 2000/s, client_bytes 67108864B/s, user_bytes 1000000B/s, \
         database_bytes \"telemetry*\" 33554432B/s, database_bytes \"*\" 102400B/s, client_queries 32"
    );
}

#[test]
fn database_globs_keep_the_order_they_are_written_in() {
    let config =
        with_cluster("[limits]\ndatabase_bytes = { \"z*\" = \"1MB/s\", \"a*\" = \"2MB/s\" }")
            .unwrap();
    let order: Vec<&str> = config
        .limits
        .database_bytes
        .iter()
        .map(|(glob, _)| glob.as_str())
        .collect();
    assert_eq!(order, ["z*", "a*"]);
}

#[test]
fn bad_limits_are_refused_naming_each_key() {
    let all = problems(with_cluster(
        "[limits]\nclient_requests = \"fast\"\nclient_bytes = \"64MiB\"\nuser_bytes = 5\n\
         database_bytes = { \"[x\" = \"1MB/s\", \"ok*\" = \"0B/s\" }\nclient_queries = 0\nclients = 3",
    ));
    let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "limits.clients",
            "limits.database_bytes.\"[x\"",
            "limits.database_bytes.\"ok*\"",
            "limits.client_requests",
            "limits.client_bytes",
            "limits.user_bytes",
            "limits.client_queries",
        ],
        "{all:?}"
    );
    let message = |key: &str| &all.iter().find(|(k, _)| k == key).unwrap().1;
    assert!(message("limits.client_requests").contains("\"2000/s\""));
    assert!(message("limits.client_requests").contains("\"fast\""));
    assert!(message("limits.client_bytes").contains("\"64MiB/s\""));
    assert!(message("limits.database_bytes.\"ok*\"").contains("greater than zero"));
    assert!(message("limits.client_queries").contains("got 0"));
}
