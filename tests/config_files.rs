//! Every shipped config must load, every broken one must be refused with a
//! message naming the key.
//!
//! Invalid fixtures say what they expect in leading comments:
//! `# expect: <text>` (the error must contain it; repeatable) and optionally
//! `# problems: <n>` (the exact number of problems reported).

use std::fs;
use std::path::{Path, PathBuf};

use influxdb_router::config::{self, Config, ConfigError};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn load(path: &Path) -> Result<Config, ConfigError> {
    config::load(Some(path)).map(|loaded| loaded.config)
}

/// The values of `# <name>: ...` comment lines in a fixture.
fn header_values(path: &Path, name: &str) -> Vec<String> {
    let prefix = format!("# {name}:");
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().to_owned())
        .collect()
}

#[test]
fn example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
    let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.clusters.len(), 1);
    assert_eq!(config.node_count(), 2);
    assert!(config.clusters[0].password.is_some());
}

#[test]
fn example_config_documents_the_real_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
    let example = load(&path).unwrap();
    let defaults = Config::embedded_default();
    assert_eq!(
        format!("{:?}", example.server),
        format!("{:?}", defaults.server)
    );
    assert_eq!(
        format!("{:?}", example.write),
        format!("{:?}", defaults.write)
    );
    assert_eq!(
        format!("{:?}", example.health),
        format!("{:?}", defaults.health)
    );
    let (e, d) = (&example.routing, &defaults.routing);
    assert_eq!(
        (&e.redis_url, &e.key_prefix, &e.amqp_url, e.poll_interval),
        (&d.redis_url, &d.key_prefix, &d.amqp_url, d.poll_interval)
    );
    assert_eq!(e.source, d.source);
    assert_eq!(
        format!("{:?}", example.metrics),
        format!("{:?}", defaults.metrics)
    );
    assert_eq!(format!("{:?}", example.log), format!("{:?}", defaults.log));
    assert!(example.limits.is_off() && defaults.limits.is_off());
}

#[test]
fn example_limits_are_valid_once_uncommented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
    let text = fs::read_to_string(path).unwrap();
    let (before, after) = text.split_once("\n[limits]\n").expect("a [limits] section");
    let section = after.split("\n[").next().unwrap();
    let keys: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter(|line| line.split(' ').nth(1) == Some("="))
        .collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    let uncommented = format!(
        "{before}\n[limits]\n{}\n[{}",
        keys.join("\n"),
        after.split_once("\n[").unwrap().1
    );
    let config = Config::from_toml_str(&uncommented, "example").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.limits.client_requests, Some(2000));
    assert_eq!(config.limits.database_bytes.len(), 2);
    assert_eq!(config.limits.client_queries, Some(32));
}

#[test]
fn every_valid_fixture_loads() {
    for path in fixtures("valid") {
        let config = load(&path).unwrap_or_else(|e| panic!("{} was refused:\n{e}", path.display()));
        assert!(config.node_count() > 0, "{}", path.display());
    }
}

#[test]
fn every_invalid_fixture_is_refused_naming_the_key() {
    for path in fixtures("invalid") {
        let expected = header_values(&path, "expect");
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        let err = match load(&path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(err) => err,
        };
        let text = err.to_string();
        for want in &expected {
            assert!(
                text.contains(want.as_str()),
                "{}: wanted {want:?} in:\n{text}",
                path.display()
            );
        }
        let file = path.display().to_string();
        for problem in err.problems() {
            assert_eq!(problem.file, file);
        }
        assert!(text.lines().all(|line| line.starts_with(&file)), "{text}");
        if let Some(count) = header_values(&path, "problems").first() {
            assert_eq!(
                err.problems().len().to_string(),
                *count,
                "{}:\n{text}",
                path.display()
            );
        }
    }
}

#[test]
fn a_missing_file_is_refused_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let text = load(&path).unwrap_err().to_string();
    assert!(text.starts_with(&path.display().to_string()), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn config_source_says_where_the_file_came_from() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/valid/minimal.toml");
    let loaded = config::load(Some(&path)).unwrap();
    assert_eq!(
        loaded.source.to_string(),
        format!("file {}", path.display())
    );
}
