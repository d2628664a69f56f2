//! A real `influxd` 1.x child process for one test.
//!
//! Each [`Influxd`] owns a temporary directory holding its configuration
//! (`influxd.toml`), meta, data and WAL directories and its log
//! (`influxd.log`), and listens on two ephemeral ports on 127.0.0.1: HTTP
//! (the one tests and the router talk to) and RPC (the top-level
//! `bind-address`, 8088 by default, where two instances would collide first).
//!
//! [`Influxd::start_https`] serves the HTTP API over HTTPS instead
//! (`https-enabled` with a test certificate, see [`super::tls`]); the
//! harness then talks to it trusting the given CA.
//!
//! The process is started through a tiny `sh` watchdog: the watchdog holds the
//! read end of a pipe whose write end only the test process holds. Stopping
//! closes the pipe and the watchdog SIGKILLs `influxd`; and should the test
//! process die without running destructors (SIGKILL, abort), the pipe closes
//! all the same and no `influxd` is left behind.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long `start`/`start_again` wait for `/ping` to answer 204.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a start is retried when `influxd` cannot bind its ports.
const START_ATTEMPTS: usize = 5;

const NOT_INSTALLED: &str = "influxd not found: install it with `apt-get update && apt-get \
     install -y influxdb influxdb-client`, or run ./scripts/test.sh";

/// Starts `influxd` (`$0`, with config `$1`) in the background, writes its pid
/// to `$2`, and SIGKILLs it as soon as stdin (moved to fd 3) reaches EOF.
/// Exits with `influxd`'s status when `influxd` exits on its own.
const WATCHDOG: &str = r#"
exec 3<&0 </dev/null
"$0" -config "$1" 3<&- &
p=$!
echo "$p" > "$2"
( read -r _line <&3; kill -9 "$p" 2>/dev/null &&
  echo "[test harness] influxd (pid $p) killed: stopped or dropped by the test" ) &
w=$!
exec 3<&-
wait "$p" 2>/dev/null
s=$?
kill "$w" 2>/dev/null
exit "$s"
"#;

/// One `influxd` process on 127.0.0.1 with its own ports and directories.
/// Dropping it kills the process and removes the directory.
pub struct Influxd {
    http_port: u16,
    rpc_port: u16,
    binary: PathBuf,
    dir: TempDir,
    /// `None` while stopped. Behind a mutex so that a shared `&Influxd` can be
    /// stopped and started again.
    process: Mutex<Option<Running>>,
    client: HarnessClient,
    /// Certificate and key when the API is served over HTTPS.
    https: Option<HttpsFiles>,
    /// With `auth-enabled = true`: the admin user the harness talks as.
    admin: Option<(String, String)>,
    /// Whether the continuous query service runs (every second).
    cq_service: bool,
}

/// The PEM files of an `influxd` that serves HTTPS.
#[derive(Debug, Clone)]
pub struct HttpsFiles {
    /// `[http] https-certificate`.
    pub cert: PathBuf,
    /// `[http] https-private-key`.
    pub key: PathBuf,
    /// The CA the harness trusts to talk to it.
    pub ca: PathBuf,
}

/// How the harness itself talks to the server.
enum HarnessClient {
    Plain(reqwest::Client),
    Https(super::tls::HttpsClient),
}

/// The watchdog shell and the pipe that keeps `influxd` alive.
struct Running {
    watchdog: Child,
    keepalive: Option<ChildStdin>,
}

impl Influxd {
    /// Starts a fresh `influxd` on two free ports and waits (up to 15 s) until
    /// `/ping` answers 204. Blocks the calling thread for about a second,
    /// which is harmless at the start of a test; to start several at once,
    /// use threads (`std::thread::scope`) or `tokio::task::spawn_blocking`.
    ///
    /// Panics if `influxd` is not on `PATH`, or (with the tail of its log) if
    /// it does not come up.
    pub fn start() -> Influxd {
        Influxd::start_with(None)
    }

    /// Like [`start`](Self::start), serving the HTTP API over HTTPS with
    /// `files` (`https-enabled = true`); [`url`](Self::url) is then
    /// `https://127.0.0.1:PORT`, and the harness trusts `files.ca`.
    pub fn start_https(files: HttpsFiles) -> Influxd {
        Influxd::start_with(Some(files))
    }

    /// Like [`start`](Self::start) with `auth-enabled = true`, and `user`
    /// created as an admin with `password` (the first user needs no
    /// credentials); the harness's own requests then carry them.
    pub async fn start_with_admin(user: &str, password: &str) -> Influxd {
        let mut influxd = tokio::task::block_in_place(|| {
            Influxd::start_configured(None, Some((user.to_string(), password.to_string())), false)
        });
        let q = format!(
            "CREATE USER {} WITH PASSWORD '{}' WITH ALL PRIVILEGES",
            quote_ident(user),
            password.replace('\\', "\\\\").replace('\'', "\\'")
        );
        let admin = influxd.admin.take();
        let answer = influxd.query(&q, None).await;
        assert!(
            answer.pointer("/results/0/error").is_none(),
            "{q}: {answer}"
        );
        influxd.admin = admin;
        influxd
    }

    fn start_with(https: Option<HttpsFiles>) -> Influxd {
        Influxd::start_configured(https, None, false)
    }

    /// Like [`start`](Self::start) with the continuous query service on,
    /// checking every second (`[continuous_queries] run-interval = "1s"`),
    /// so CQs with short intervals run while a test watches.
    pub fn start_with_cq_service() -> Influxd {
        Influxd::start_configured(None, None, true)
    }

    fn start_configured(
        https: Option<HttpsFiles>,
        admin: Option<(String, String)>,
        cq_service: bool,
    ) -> Influxd {
        let binary = find_on_path("influxd").unwrap_or_else(|| panic!("{NOT_INSTALLED}"));
        let dir = tempfile::Builder::new()
            .prefix("influxd-test-")
            .tempdir()
            .expect("cannot create a temporary directory for influxd");
        // Never reuse connections: an `Influxd` may outlive the runtime
        // that first used it, and pooled connections would die with it.
        let client = match &https {
            None => HarnessClient::Plain(
                reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(0)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("cannot build an HTTP client"),
            ),
            Some(files) => HarnessClient::Https(super::tls::HttpsClient::trusting(&files.ca)),
        };
        let mut influxd = Influxd {
            http_port: 0,
            rpc_port: 0,
            binary,
            dir,
            process: Mutex::new(None),
            client,
            https,
            admin,
            cq_service,
        };
        for attempt in 1..=START_ATTEMPTS {
            let (http_port, rpc_port) = super::free_port_pair();
            influxd.http_port = http_port;
            influxd.rpc_port = rpc_port;
            influxd.write_config();
            match influxd.spawn_and_wait() {
                Ok(()) => return influxd,
                Err(StartError::AddressInUse) if attempt < START_ATTEMPTS => continue,
                Err(err) => influxd.start_failed(err),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// `http://127.0.0.1:PORT`, the HTTP API (`https://` with
    /// [`start_https`](Self::start_https)).
    pub fn url(&self) -> String {
        let scheme = if self.https.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.http_port)
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.http_port
    }

    /// The HTTP address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.http_port))
    }

    /// The RPC port (the top-level `bind-address`).
    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    /// The temporary directory holding config, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `influxd` log file (stdout and stderr, appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("influxd.log")
    }

    /// The last `max_bytes` of the log.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        log_tail(&self.log_path(), max_bytes)
    }

    /// The pid of the current `influxd` process, if one was started.
    pub fn pid(&self) -> Option<u32> {
        self.process().as_ref()?;
        fs::read_to_string(self.pid_path())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Whether the process is alive (it may still be starting up).
    pub fn is_running(&self) -> bool {
        match &mut *self.process() {
            Some(running) => matches!(running.watchdog.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills `influxd` (SIGKILL, like a crash) and waits for it to be gone.
    /// Ports, configuration and data directory are kept for
    /// [`start_again`](Self::start_again). Does nothing if already stopped.
    pub fn stop(&self) {
        let Some(mut running) = self.process().take() else {
            return;
        };
        let pid = fs::read_to_string(self.pid_path()).ok();
        // Closing the pipe makes the watchdog kill influxd and exit.
        drop(running.keepalive.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match running.watchdog.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    // The watchdog did not do its job: kill both directly.
                    if let Some(pid) = pid.as_deref().map(str::trim) {
                        let _ = Command::new("kill").args(["-9", pid]).status();
                    }
                    let _ = running.watchdog.kill();
                    let _ = running.watchdog.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
            }
        }
        let _ = fs::remove_file(self.pid_path());
    }

    /// Starts `influxd` again on the same ports with the same data, after
    /// [`stop`](Self::stop), and waits for `/ping`. Retries for a while if
    /// a port is (still) taken. Panics with the log tail if it does not come
    /// up. Does nothing if it is running.
    ///
    /// Like [`start`](Self::start) this blocks the calling thread (about a
    /// second). If a router under test runs on the same runtime, use a
    /// `multi_thread` runtime and `tokio::task::block_in_place(|| node.start_again())`
    /// so that the router keeps running meanwhile.
    pub fn start_again(&self) {
        if self.is_running() {
            return;
        }
        self.stop(); // reap a process that exited on its own
        let mut attempt = 1;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(StartError::AddressInUse) if attempt < START_ATTEMPTS * 4 => {
                    attempt += 1;
                    thread::sleep(Duration::from_millis(250));
                }
                Err(err) => self.start_failed(err),
            }
        }
    }

    /// Runs `q` with `POST /query` (form body, so that any statement works,
    /// including `CREATE`/`DROP`) and returns the JSON answer whatever the
    /// status. Panics if the server cannot be reached or answers non-JSON.
    pub async fn query(&self, q: &str, db: Option<&str>) -> serde_json::Value {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("q", q);
        if let Some(db) = db {
            form.append_pair("db", db);
        }
        let url = format!("{}/query", self.url());
        let form_type = "application/x-www-form-urlencoded";
        let (status, body) = self
            .post(&url, Some(form_type), form.finish())
            .await
            .unwrap_or_else(|e| panic!("POST {url} ({q}) failed: {e}"));
        serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("POST /query ({q}) answered {status} with a body that is not JSON ({e}): {body}")
        })
    }

    /// Writes line protocol to `db` with `POST /write` and asserts a 204.
    pub async fn write(&self, db: &str, body: &str) {
        let url = format!(
            "{}/write?{}",
            self.url(),
            form_urlencoded::Serializer::new(String::new())
                .append_pair("db", db)
                .finish()
        );
        let (status, text) = self
            .post(&url, None, body.to_owned())
            .await
            .unwrap_or_else(|e| panic!("POST {url} failed: {e}"));
        assert_eq!(status, 204, "POST {url} answered {status}: {text}");
    }

    /// `POST url` with the harness client: status and body text.
    async fn post(
        &self,
        url: &str,
        content_type: Option<&str>,
        body: String,
    ) -> Result<(u16, String), String> {
        match &self.client {
            HarnessClient::Plain(client) => {
                let mut request = client.post(url).body(body);
                if let Some((user, password)) = &self.admin {
                    request = request.basic_auth(user, Some(password));
                }
                if let Some(content_type) = content_type {
                    request = request.header("Content-Type", content_type);
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let text = response.text().await.map_err(|e| e.to_string())?;
                Ok((status, text))
            }
            HarnessClient::Https(client) => {
                let answer = client.post(url, content_type, body).await?;
                Ok((answer.status, answer.body))
            }
        }
    }

    /// `CREATE DATABASE "name"`, asserting that the statement succeeded.
    pub async fn create_database(&self, name: &str) {
        let q = format!("CREATE DATABASE {}", quote_ident(name));
        let answer = self.query(&q, None).await;
        assert!(
            answer.pointer("/results/0/error").is_none() && answer.get("error").is_none(),
            "{q} failed: {answer}"
        );
    }

    /// The names of the databases, from `SHOW DATABASES`.
    pub async fn databases(&self) -> Vec<String> {
        let answer = self.query("SHOW DATABASES", None).await;
        answer
            .pointer("/results/0/series/0/values")
            .and_then(|v| v.as_array())
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| row.get(0)?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn process(&self) -> MutexGuard<'_, Option<Running>> {
        // A test that panicked while holding the lock leaves nothing
        // half-done behind that matters here.
        self.process
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.path().join("influxd.pid")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("influxd.toml")
    }

    fn write_config(&self) {
        let root = self.dir.path();
        let path = |name: &str| toml_string(&root.join(name).to_string_lossy());
        let https = match &self.https {
            None => String::new(),
            Some(files) => format!(
                "  https-enabled = true\n  https-certificate = {}\n  https-private-key = {}\n",
                toml_string(&files.cert.to_string_lossy()),
                toml_string(&files.key.to_string_lossy()),
            ),
        };
        let config = format!(
            r#"# Written by tests/support/influxd.rs for one test instance.
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"

[meta]
  dir = {meta}
  logging-enabled = false

[data]
  dir = {data}
  wal-dir = {wal}
  wal-fsync-delay = "0s"
  query-log-enabled = false

[coordinator]
  log-queries-after = "0s"

[retention]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http}"
  auth-enabled = {auth}
  log-enabled = false
  write-tracing = false
  pprof-enabled = false
{https}
[logging]
  level = "error"
  suppress-logo = true

[subscriber]
  enabled = false

[continuous_queries]
  enabled = {cqs}
  log-enabled = false
  run-interval = "1s"
"#,
            rpc = self.rpc_port,
            http = self.http_port,
            meta = path("meta"),
            data = path("data"),
            wal = path("wal"),
            https = https,
            auth = self.admin.is_some(),
            cqs = self.cq_service,
        );
        fs::write(self.config_path(), config).expect("cannot write the influxd config");
    }

    /// Spawns the watchdog + `influxd` and waits for `/ping`. On failure the
    /// process is gone again when this returns.
    fn spawn_and_wait(&self) -> Result<(), StartError> {
        assert!(self.process().is_none(), "influxd is already running");
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("cannot open the influxd log");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = writeln!(
            &log,
            "[test harness] starting influxd: http 127.0.0.1:{}, rpc 127.0.0.1:{}",
            self.http_port, self.rpc_port
        );
        let stderr = log.try_clone().expect("cannot clone the log file handle");
        let _ = fs::remove_file(self.pid_path());

        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&self.binary)
            .arg(self.config_path())
            .arg(self.pid_path())
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(stderr);
        // INFLUXDB_* variables override the config file: keep them out.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("INFLUXDB_") {
                command.env_remove(key);
            }
        }
        let mut watchdog = command.spawn().expect("cannot spawn sh to run influxd");
        let keepalive = watchdog.stdin.take();
        *self.process() = Some(Running {
            watchdog,
            keepalive,
        });

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                self.stop();
                let log = read_from(&log_path, log_start);
                return Err(if log.contains("address already in use") {
                    StartError::AddressInUse
                } else {
                    StartError::Exited
                });
            }
            if ping(self.addr(), self.https.as_ref()) {
                // Make sure it is our process answering, not something that
                // took the port and made influxd fail to bind.
                thread::sleep(Duration::from_millis(20));
                if self.is_running() {
                    return Ok(());
                }
                continue;
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(StartError::Timeout);
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    fn start_failed(&self, err: StartError) -> ! {
        panic!(
            "influxd ({}) did not start on {} (rpc port {}): {}\n--- tail of {} ---\n{}",
            self.binary.display(),
            self.url(),
            self.rpc_port,
            match err {
                StartError::AddressInUse => "its ports stayed in use",
                StartError::Exited => "it exited",
                StartError::Timeout => "no 204 on /ping within 15 s",
            },
            self.log_path().display(),
            self.log_tail(4096),
        )
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Influxd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Influxd")
            .field("url", &self.url())
            .field("rpc_port", &self.rpc_port)
            .field("dir", &self.dir.path())
            .field("running", &self.is_running())
            .finish()
    }
}

#[derive(Debug)]
enum StartError {
    AddressInUse,
    Exited,
    Timeout,
}

/// `GET /ping` over a blocking socket (through TLS, trusting `https.ca`,
/// when given): true on a 204 from an InfluxDB (not a fake) server.
fn ping(addr: SocketAddr, https: Option<&HttpsFiles>) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
        let request = format!("GET /ping HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let mut answer = Vec::new();
        match https {
            None => {
                tcp.write_all(request.as_bytes())?;
                tcp.read_to_end(&mut answer)?;
            }
            Some(files) => {
                let config: Arc<rustls::ClientConfig> = super::tls::client_config(&files.ca);
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let session =
                    rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
                let mut stream = rustls::StreamOwned::new(session, tcp);
                stream.write_all(request.as_bytes())?;
                // influxd closes without close_notify: keep what arrived
                if let Err(e) = stream.read_to_end(&mut answer) {
                    if answer.is_empty() {
                        return Err(e);
                    }
                }
            }
        }
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        Ok(answer.starts_with("http/1.1 204")
            && answer.contains("x-influxdb-version:")
            && !answer.contains("-fake"))
    };
    attempt().unwrap_or(false)
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

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

fn log_tail(path: &Path, max_bytes: u64) -> String {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let tail = read_from(path, len.saturating_sub(max_bytes));
    if tail.trim().is_empty() {
        "(log is empty)".to_owned()
    } else {
        tail
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An InfluxQL double-quoted identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}
