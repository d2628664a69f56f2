//! The binary's logs: one line per event on stderr, text or JSON (from
//! `--log-format` or `[log] format`), filtered by `[log] level` or
//! `RUST_LOG`; node state changes always logged, requests never at the
//! default level, and malformed UDP datagrams in at most one line per period.

mod support;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Influxd;

const BIN: &str = env!("CARGO_BIN_EXE_influxdb-router");

/// How long an expected log line may take.
const EVENTUALLY: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn json_logs_are_one_object_per_line_and_report_a_node_going_down() {
    let config = Config::new();
    let mut router = Router::start(&config.path, &["--log-format", "json"], Some("info"));
    let down = router.wait_for(|line| line.contains("node is unhealthy"));
    let down: Value = serde_json::from_str(&down).expect("JSON line");
    assert_eq!(down["level"], "WARN", "{down}");
    assert_eq!(down["node"], "n", "{down}");
    assert_eq!(down["cluster"], "c", "{down}");
    assert!(
        down["error"].as_str().unwrap_or("").contains("ping failed"),
        "{down}"
    );
    let lines = router.stop();
    assert!(lines.len() >= 4, "{lines:#?}");
    for line in &lines {
        let object: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(object[key].is_string(), "no {key} in {line}");
        }
        assert!(
            object.get("fields").is_none(),
            "fields are flattened: {line}"
        );
    }
    let starting: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(starting["message"], "starting influxdb-router");
    assert!(
        starting["config"]
            .as_str()
            .unwrap_or("")
            .contains(config.path.to_str().unwrap()),
        "{starting}"
    );
}

#[test]
fn the_log_format_comes_from_the_config_file_unless_the_flag_says_otherwise() {
    let config = Config::with("[log]\nformat = \"json\"\n");
    let mut router = Router::start(&config.path, &[], Some("info"));
    let listening = router.wait_for(|line| line.contains("listening"));
    let listening: Value = serde_json::from_str(&listening).expect("a JSON line");
    assert!(listening["addr"].as_str().is_some(), "{listening}");
    router.stop();

    let mut router = Router::start(&config.path, &["--log-format", "text"], Some("info"));
    let listening = router.wait_for(|line| line.contains("listening"));
    assert!(
        listening.contains(" INFO listening addr=127.0.0.1:"),
        "{listening}"
    );
    assert!(
        !listening.contains('\u{1b}'),
        "no colours into a pipe: {listening:?}"
    );
    router.stop();
}

#[test]
fn rust_log_and_the_configured_level_decide_what_is_logged() {
    // RUST_LOG=warn hides the info start-up lines but not the node going down
    let config = Config::new();
    let mut router = Router::start(&config.path, &[], Some("warn"));
    router.wait_for(|line| line.contains("node is unhealthy"));
    let lines = router.stop();
    assert!(
        lines.iter().all(|l| !l.contains("INFO")),
        "nothing below warn: {lines:#?}"
    );

    // [log] level = "warn" does the same without RUST_LOG ...
    let config = Config::with("[log]\nlevel = \"warn\"\n");
    let mut router = Router::start(&config.path, &[], None);
    router.wait_for(|line| line.contains("node is unhealthy"));
    let lines = router.stop();
    assert!(
        lines.iter().all(|l| !l.contains("INFO")),
        "nothing below warn: {lines:#?}"
    );

    // ... and RUST_LOG wins over it
    let mut router = Router::start(&config.path, &[], Some("info"));
    router.wait_for(|line| line.contains("INFO starting influxdb-router"));
    router.stop();
}

#[test]
fn requests_do_not_log_at_the_default_level() {
    let config = Config::new();
    let mut router = Router::start(&config.path, &[], Some("info"));
    let listening = router.wait_for(|line| line.contains("listening addr="));
    let addr = listening.rsplit("addr=").next().unwrap().trim().to_string();
    router.wait_for(|line| line.contains("node is unhealthy"));
    let before = router.lines().len();
    for path in [
        "/ping",
        "/health",
        "/status",
        "/query?q=SHOW+DATABASES",
        "/nowhere",
    ] {
        for _ in 0..5 {
            http_get(&addr, path);
        }
    }
    for _ in 0..5 {
        http_post(&addr, "/write?db=d", "m v=1 1\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    let lines = router.stop();
    let during: Vec<&String> = lines[before..]
        .iter()
        .filter(|l| !l.contains("shutting down") && !l.contains("all connections closed"))
        .collect();
    assert!(during.len() <= 2, "30 requests logged at info: {during:#?}");
}

#[test]
fn malformed_udp_datagrams_are_reported_in_one_line_per_period() {
    let config = Config::with_server("udp_bind = \"127.0.0.1:0\"\n");
    let mut router = Router::start(&config.path, &["--log-format", "json"], Some("info"));
    let listening = router.wait_for(|line| line.contains("listening for UDP line protocol"));
    let listening: Value = serde_json::from_str(&listening).unwrap();
    let udp = listening["addr"].as_str().expect("udp addr").to_string();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in ["cpu", "mem,host=a", ",x v=1"] {
        sender.send_to(datagram.as_bytes(), &udp).unwrap();
    }
    let dropped = router.wait_for(|line| line.contains("malformed UDP datagrams dropped"));
    let dropped: Value = serde_json::from_str(&dropped).unwrap();
    assert_eq!(dropped["level"], "WARN", "{dropped}");
    assert_eq!(dropped["dropped_since_last_report"], 1, "{dropped}");
    assert!(
        dropped["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("unable to parse: line 1: missing field set"),
        "{dropped}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let lines = router.stop();
    let reports = lines
        .iter()
        .filter(|l| l.contains("malformed UDP datagrams dropped"))
        .count();
    assert_eq!(reports, 1, "{lines:#?}");
}

#[test]
fn a_full_queue_and_a_node_coming_back_are_logged_once_each() {
    let node = Influxd::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(node.create_database("d"));
    let config = Config::build_for(
        &node.url(),
        "",
        "max_size_per_node = \"8KiB\"\non_full = \"reject\"\n",
        "",
    );
    let mut router = Router::start(&config.path, &["--log-format", "json"], Some("info"));
    let listening = router.wait_for(|line| line.contains("\"listening\""));
    let listening: Value = serde_json::from_str(&listening).unwrap();
    let addr = listening["addr"].as_str().unwrap().to_string();

    node.stop();
    router.wait_for(|line| line.contains("node is unhealthy"));
    let padding = "x".repeat(100);
    let mut accepted = 0;
    for i in 0..150 {
        let body = format!(
            "m v={i}i,pad=\"{padding}\" {}\n",
            1_700_000_000_000_000_000u64 + i
        );
        let status = http_post(&addr, "/write?db=d&consistency=any", &body);
        if status.contains(" 204 ") {
            accepted += 1;
        } else {
            assert!(status.contains(" 503 "), "{status}");
        }
    }
    assert!(
        accepted > 0 && accepted < 150,
        "{accepted} of 150 writes queued"
    );
    router.wait_for(|line| line.contains("queue full: refusing new records"));

    node.start_again();
    let replayed = router.wait_for(|line| line.contains("queue replayed"));
    let replayed: Value = serde_json::from_str(&replayed).unwrap();
    assert_eq!(replayed["records"], accepted, "{replayed}");
    let lines = router.stop();
    println!("{}", lines.join("\n"));
    for (message, times) in [
        ("node is unhealthy", 1),
        ("queue full: refusing new records", 1),
        ("node is healthy again", 1),
        ("replaying the node's queue", 1),
        ("queue replayed", 1),
    ] {
        let found = lines.iter().filter(|l| l.contains(message)).count();
        assert_eq!(found, times, "{message:?} logged {found} times: {lines:#?}");
    }
    let points = runtime.block_on(node.query("SELECT count(v) FROM m", Some("d")));
    assert_eq!(
        points.pointer("/results/0/series/0/values/0/1"),
        Some(&Value::from(accepted)),
        "{points}"
    );
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// A router configuration in a temporary directory: one node on a closed
/// port, health checks every 100 ms.
struct Config {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Config {
    fn new() -> Config {
        Config::build("", "")
    }

    /// With more sections appended.
    fn with(extra: &str) -> Config {
        Config::build("", extra)
    }

    /// With more `[server]` keys.
    fn with_server(server: &str) -> Config {
        Config::build(server, "")
    }

    fn build(server: &str, extra: &str) -> Config {
        let closed = format!("http://127.0.0.1:{}", support::free_port());
        Config::build_for(&closed, server, "", extra)
    }

    /// One node at `url`, with more `[server]` and `[buffer]` keys and
    /// sections.
    fn build_for(url: &str, server: &str, buffer: &str, extra: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.toml");
        let text = format!(
            "[server]\nbind = \"127.0.0.1:0\"\n{server}\n[health]\ninterval = \"100ms\"\nunhealthy_after = 1\n[buffer]\ndir = {:?}\n{buffer}[[cluster]]\nname = \"c\"\nnodes = [{{ name = \"n\", url = \"{url}\" }}]\n{extra}",
            dir.path().join("queues").display().to_string()
        );
        std::fs::write(&path, text).unwrap();
        Config { _dir: dir, path }
    }
}

/// The binary with its stderr read into memory line by line.
struct Router {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Router {
    /// Runs `influxdb-router -c config args…` with `RUST_LOG` set to
    /// `rust_log` (or unset).
    fn start(config: &std::path::Path, args: &[&str], rust_log: Option<&str>) -> Router {
        let mut command = Command::new(BIN);
        command
            .arg("-c")
            .arg(config)
            .args(args)
            .env_remove("INFLUXDB_ROUTER_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command.spawn().expect("the router binary starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Router {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first line that satisfies `wanted`, waiting for it.
    fn wait_for(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| wanted(l)) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the router exited ({status}): {:#?}", self.lines());
            }
            assert!(
                Instant::now() < deadline,
                "no such line in: {:#?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait for the exit, and every line it logged.
    fn stop(&mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(killed.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let status = self.child.wait().expect("the router exits");
        assert!(status.success(), "{status}: {:#?}", self.lines());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.lines()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status line.
fn http(addr: &str, request: String) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the router");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

fn http_get(addr: &str, path: &str) -> String {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n"),
    )
}

fn http_post(addr: &str, path: &str, body: &str) -> String {
    http(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: r\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}
