//! A real Prometheus server (Debian package `prometheus`) for one test:
//! its own temporary directory (configuration, TSDB, log), a free port on
//! 127.0.0.1, scraping itself, with the remote storage the test asks for.
//!
//! Like [`super::Influxd`] it runs behind a tiny `sh` watchdog holding a
//! pipe that only the test process holds: dropping the handle, or the test
//! process dying, closes the pipe and the watchdog SIGKILLs Prometheus.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const NOT_INSTALLED: &str = "prometheus not found on PATH: these tests use a real Prometheus \
     server as the remote storage client. Install it with `apt-get update && apt-get install -y \
     prometheus`, or run ./scripts/test.sh (which does)";

/// Runs `$0 "$@"` in the background and SIGKILLs it when stdin (moved to
/// fd 3) reaches EOF; exits with its status when it exits on its own.
const WATCHDOG: &str = r#"
exec 3<&0 </dev/null
"$0" "$@" 3<&- &
p=$!
( read -r _line <&3; kill -9 "$p" 2>/dev/null ) &
w=$!
exec 3<&-
wait "$p" 2>/dev/null
s=$?
kill "$w" 2>/dev/null
exit "$s"
"#;

/// Where Prometheus sends its samples, and where it reads from.
pub struct RemoteStorage {
    /// `remote_write` URLs, each with its own queue (one shard, so that
    /// samples go out in the order they were scraped).
    pub write: Vec<String>,
    /// `remote_read` URLs (with `read_recent: true`).
    pub read: Vec<String>,
}

/// One Prometheus process; killed on drop.
pub struct Prometheus {
    port: u16,
    dir: TempDir,
    watchdog: Child,
    keepalive: Option<ChildStdin>,
}

impl Prometheus {
    /// Starts Prometheus scraping itself every second, and waits (up to
    /// 30 s) until it is ready. Panics with a clear message when the
    /// binary is missing, and with its log when it does not come up.
    pub fn start(storage: &RemoteStorage) -> Prometheus {
        let binary = find_on_path("prometheus").unwrap_or_else(|| panic!("{NOT_INSTALLED}"));
        let dir = tempfile::Builder::new()
            .prefix("prometheus-test-")
            .tempdir()
            .expect("cannot create a temporary directory for prometheus");
        let port = super::free_port();
        let config = dir.path().join("prometheus.yml");
        fs::write(&config, config_text(port, storage)).expect("cannot write prometheus.yml");
        let log = fs::File::create(dir.path().join("prometheus.log")).expect("prometheus.log");
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let keepalive = watchdog.stdin.take();
        let prometheus = Prometheus {
            port,
            dir,
            watchdog,
            keepalive,
        };
        prometheus.wait_ready();
        prometheus
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The log (stderr and stdout) so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = format!("127.0.0.1:{}", self.port);
        loop {
            if http_get_status(&ready, "/-/ready") == Some(200) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "prometheus did not become ready in 30 s; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        drop(self.keepalive.take());
        let _ = self.watchdog.wait();
    }
}

fn config_text(port: u16, storage: &RemoteStorage) -> String {
    let mut text = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    );
    if !storage.write.is_empty() {
        text.push_str("remote_write:\n");
        for url in &storage.write {
            text.push_str(&format!(
                "  - url: '{url}'\n    remote_timeout: 10s\n    queue_config:\n      \
                 min_shards: 1\n      max_shards: 1\n      batch_send_deadline: 200ms\n      \
                 min_backoff: 50ms\n      max_backoff: 500ms\n    metadata_config:\n      \
                 send: true\n      send_interval: 1s\n"
            ));
        }
    }
    if !storage.read.is_empty() {
        text.push_str("remote_read:\n");
        for url in &storage.read {
            text.push_str(&format!("  - url: '{url}'\n    read_recent: true\n"));
        }
    }
    text
}

/// The status of `GET path` on `addr`, with a plain blocking socket (the
/// harness may be called outside a runtime).
fn http_get_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}
