//! The `influxdb-router` binary: config lookup, `check-config`, refusing a bad
//! config before listening, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_influxdb-router");

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/config/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run(args: &[&str], env_config: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("INFLUXDB_ROUTER_CONFIG")
        .env("RUST_LOG", "info");
    if let Some(path) = env_config {
        command.env("INFLUXDB_ROUTER_CONFIG", path);
    }
    let output = command.output().expect("binary runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn check_config_without_a_file_shows_the_embedded_default() {
    let (code, stdout, _) = run(&["check-config"], None);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("configuration: embedded default (valid)"),
        "{stdout}"
    );
    assert!(stdout.contains("listen: 0.0.0.0:5096"), "{stdout}");
    assert!(stdout.contains("cluster default (1 nodes)"), "{stdout}");
    assert!(stdout.contains("http://127.0.0.1:8086"), "{stdout}");
}

#[test]
fn check_config_accepts_the_example_and_prints_its_nodes() {
    let example = format!("{}/config.toml.example", env!("CARGO_MANIFEST_DIR"));
    let (code, stdout, stderr) = run(&["check-config", "-c", &example], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("influx-a") && stdout.contains("influx-b"),
        "{stdout}"
    );
}

#[test]
fn config_path_comes_from_the_environment_when_no_flag_is_given() {
    let example = format!("{}/config.toml.example", env!("CARGO_MANIFEST_DIR"));
    let (code, stdout, _) = run(&["check-config"], Some(&example));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("(from $INFLUXDB_ROUTER_CONFIG)"),
        "{stdout}"
    );
}

#[test]
fn check_config_lists_every_problem_with_file_and_key_and_fails() {
    let path = fixture("invalid/several_problems.toml");
    let (code, _, stderr) = run(&["check-config", "--config", &path], None);
    assert_eq!(code, 1);
    for expected in [
        "cluster[0].nodes[0].url",
        "cluster[0].nodes[1].name",
        "cluster[0].nodes[1].url",
    ] {
        assert!(
            stderr.contains(&format!("{path}: {expected}")),
            "{expected} missing in {stderr}"
        );
    }
}

#[test]
fn serve_with_a_bad_config_exits_before_listening() {
    let started = Instant::now();
    let (code, _, stderr) = run(
        &["serve", "-c", &fixture("invalid/bad_duration.toml")],
        None,
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (code, _, stderr) = run(&["-c", "/nonexistent/router.toml"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("/nonexistent/router.toml"), "{stderr}");
}

#[test]
fn serve_logs_its_configuration_answers_ping_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.toml");
    let config = format!(
        "[server]\nbind = \"127.0.0.1:0\"\n[buffer]\ndir = {:?}\n[[cluster]]\nname = \"c\"\nnodes = [{{ name = \"n\", url = \"http://127.0.0.1:9\" }}]\n",
        dir.path().join("queues").display().to_string()
    );
    std::fs::write(&path, config).unwrap();
    let child = Command::new(BIN)
        .args(["-c", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let starting = lines.next().unwrap().unwrap();
    assert!(
        starting.contains("starting influxdb-router") && starting.contains(path.to_str().unwrap()),
        "{starting}"
    );
    let listening = lines.next().unwrap().unwrap();
    let addr = listening.rsplit("addr=").next().unwrap().trim().to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /ping HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "router did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn version_flag_prints_the_crate_version() {
    let (code, stdout, _) = run(&["--version"], None);
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("influxdb-router {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Kills the child if the test ends early, so no router outlives its test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
