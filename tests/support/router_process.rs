//! The router binary as a child process, for tests that kill it.
//!
//! [`RouterProcess`] writes a configuration file into its own temporary
//! directory, runs `influxdb-router -c FILE` and waits for the `listening
//! addr=` line on stderr. Everything the router writes to stderr is kept in
//! memory (a thread drains the pipe so it never fills) and can be read with
//! [`RouterProcess::stderr_text`].
//!
//! The router listens on a fixed port so that a router started again
//! ([`RouterProcess::start_again`], [`RouterProcess::restart`]) is at the same
//! address as before. Write the placeholder [`BIND`] where the listen address
//! goes (`bind = "@BIND@"`): the first start replaces it with
//! `127.0.0.1:PORT` for a port from [`super::free_port`], and picks another
//! port should that one be taken. Text without the placeholder is used as it
//! is.
//!
//! The caller owns everything the configuration points at, the `[buffer]`
//! directory in particular: it must outlive restarts of the child, so keep
//! its `TempDir` in the test.
//!
//! As with [`super::Influxd`], the binary runs under a small `sh` watchdog
//! holding the read end of a pipe only the test process writes to: dropping
//! the handle, or the test process dying in any way, SIGKILLs the router.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The router binary built for these tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_influxdb-router");

/// Stands for the listen address in configuration text (see the module doc).
pub const BIND: &str = "@BIND@";

/// How long a start waits for the `listening addr=` line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a first start tries another port when its port is taken.
const FIRST_START_ATTEMPTS: usize = 5;
/// How long a start on the same port keeps retrying while it is taken.
const SAME_PORT_RETRY: Duration = Duration::from_secs(10);
/// Stderr beyond this many bytes is drained but no longer kept.
const MAX_KEPT_STDERR: usize = 16 << 20;

/// Starts the router (`$0`, config `$1`) in the background with its stdout
/// on stderr, prints its pid on stdout, and SIGKILLs it as soon as stdin
/// (moved to fd 3) reaches EOF. Exits with the router's status.
const WATCHDOG: &str = r#"
exec 3<&0 </dev/null
"$0" -c "$1" 3<&- >&2 &
p=$!
echo "$p"
( read -r _line <&3; kill -9 "$p" 2>/dev/null ) &
w=$!
exec 3<&-
wait "$p" 2>/dev/null
s=$?
kill "$w" 2>/dev/null
exit "$s"
"#;

/// A running (or killed) `influxdb-router` child process.
pub struct RouterProcess {
    dir: TempDir,
    config_text: String,
    port: u16,
    addr: Option<SocketAddr>,
    running: Option<Running>,
    stderr: Arc<Mutex<String>>,
    starts: usize,
}

struct Running {
    watchdog: Child,
    keepalive: Option<ChildStdin>,
    pid: u32,
    stderr_done: Arc<AtomicBool>,
}

enum StartError {
    AddressInUse,
    Exited(String),
    Timeout,
}

impl RouterProcess {
    /// Writes `config_text` (with [`BIND`] replaced, see the module doc) to
    /// `router.toml` in a fresh temporary directory, starts the router and
    /// waits (up to 20 s) until it listens. Panics with its stderr if it
    /// exits or does not listen in time.
    pub fn start(config_text: &str) -> RouterProcess {
        let dir = tempfile::Builder::new()
            .prefix("router-process-")
            .tempdir()
            .expect("cannot create a temporary directory for the router");
        let mut router = RouterProcess {
            dir,
            config_text: String::new(),
            port: 0,
            addr: None,
            running: None,
            stderr: Arc::new(Mutex::new(String::new())),
            starts: 0,
        };
        let templated = config_text.contains(BIND);
        for attempt in 1..=FIRST_START_ATTEMPTS {
            router.resolve_config(config_text);
            match router.spawn_and_wait() {
                Ok(()) => return router,
                Err(StartError::AddressInUse) if templated && attempt < FIRST_START_ATTEMPTS => {}
                Err(StartError::AddressInUse) => {
                    router.start_same_port();
                    return router;
                }
                Err(err) => router.start_failed(err),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Starts the router again after [`kill9`](Self::kill9) (or after it
    /// exited), with the same configuration file on the same port, retrying
    /// for a while if the port is still taken. Does nothing if it runs.
    pub fn start_again(&mut self) {
        if self.is_running() {
            return;
        }
        self.kill9(); // reap a process that exited on its own
        self.start_same_port();
    }

    /// SIGKILLs the router if it runs, then starts it again on the same port
    /// with the same configuration.
    pub fn restart(&mut self) {
        self.kill9();
        self.start_again();
    }

    /// SIGKILLs the router (a crash: nothing is flushed) and waits until it
    /// is gone. Does nothing if it is not running.
    pub fn kill9(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        if matches!(running.watchdog.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-9", &running.pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        // Closing the pipe makes the watchdog kill the router as well.
        drop(running.keepalive.take());
        reap(&mut running);
    }

    /// Sends SIGTERM and waits up to `timeout` for the router to exit (it
    /// drains and flushes first). Returns its exit status, or `None` if it
    /// was not running or did not exit in time (it is SIGKILLed then).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let running = self.running.as_mut()?;
        let _ = Command::new("kill")
            .args(["-TERM", &running.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = running.watchdog.try_wait() {
                let mut running = self.running.take().expect("checked above");
                reap(&mut running);
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.kill9();
        None
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The address the router said it listens on (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the router has listened at least once")
    }

    /// The port written into the configuration.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The router's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.pid)
    }

    /// Whether the router process is alive.
    pub fn is_running(&mut self) -> bool {
        match &mut self.running {
            Some(running) => matches!(running.watchdog.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything the router wrote to stderr so far, across restarts (each
    /// start is preceded by a `[test harness]` line).
    pub fn stderr_text(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// The configuration text as written to the file (placeholder replaced).
    pub fn config_text(&self) -> &str {
        &self.config_text
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("router.toml")
    }

    /// The temporary directory holding the configuration file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn resolve_config(&mut self, template: &str) {
        if template.contains(BIND) {
            self.port = super::free_port();
            let bind = format!("127.0.0.1:{}", self.port);
            self.config_text = template.replace(BIND, &bind);
        } else {
            self.config_text = template.to_owned();
            self.port = port_in(&self.config_text).unwrap_or(0);
        }
        std::fs::write(self.config_path(), &self.config_text)
            .expect("cannot write the router configuration");
    }

    /// Starts on the configured port, retrying while it is taken.
    fn start_same_port(&mut self) {
        let deadline = Instant::now() + SAME_PORT_RETRY;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(StartError::AddressInUse) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(err) => self.start_failed(err),
            }
        }
    }

    /// Spawns the watchdog and the router and waits for `listening addr=`.
    /// On failure the process is gone again when this returns.
    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        assert!(self.running.is_none(), "the router is already running");
        self.starts += 1;
        let offset = {
            let mut log = lock(&self.stderr);
            log.push_str(&format!(
                "[test harness] start #{} of {} -c {}\n",
                self.starts,
                BINARY,
                self.config_path().display()
            ));
            log.len()
        };
        self.running = Some(self.spawn());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let new_output = lock(&self.stderr)[offset..].to_owned();
            if let Some(addr) = listening_addr(&new_output) {
                self.addr = Some(addr);
                return Ok(());
            }
            let running = self.running.as_mut().expect("set above");
            let exited = !matches!(running.watchdog.try_wait(), Ok(None));
            if exited && running.stderr_done.load(Ordering::SeqCst) {
                self.kill9();
                let output = lock(&self.stderr)[offset..].to_owned();
                let lower = output.to_ascii_lowercase();
                return Err(if lower.contains("address already in use") {
                    StartError::AddressInUse
                } else {
                    StartError::Exited(output)
                });
            }
            if Instant::now() >= deadline {
                self.kill9();
                return Err(StartError::Timeout);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn spawn(&self) -> Running {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg(BINARY)
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env_remove("INFLUXDB_ROUTER_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut watchdog = command.spawn().expect("cannot spawn sh to run the router");
        let keepalive = watchdog.stdin.take();
        let stderr_done = Arc::new(AtomicBool::new(false));
        drain(
            watchdog.stderr.take().expect("piped stderr"),
            self.stderr.clone(),
            stderr_done.clone(),
        );
        let mut stdout = watchdog.stdout.take().expect("piped stdout");
        let pid = read_pid(&mut stdout);
        Running {
            watchdog,
            keepalive,
            pid,
            stderr_done,
        }
    }

    fn start_failed(&self, err: StartError) -> ! {
        let why = match err {
            StartError::AddressInUse => "its port stayed in use".to_owned(),
            StartError::Exited(_) => "it exited".to_owned(),
            StartError::Timeout => format!("no `listening addr=` within {START_TIMEOUT:?}"),
        };
        panic!(
            "the router did not start on port {}: {why}\n--- config ---\n{}\n--- stderr ---\n{}",
            self.port,
            self.config_text,
            self.stderr_text()
        )
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl std::fmt::Debug for RouterProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterProcess")
            .field("port", &self.port)
            .field("addr", &self.addr)
            .field("pid", &self.pid())
            .field("config", &self.config_path())
            .finish()
    }
}

/// Waits for the watchdog (which exits once the router is gone) and for the
/// end of its stderr.
fn reap(running: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match running.watchdog.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = Command::new("kill")
                    .args(["-9", &running.pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
                let _ = running.watchdog.kill();
                let _ = running.watchdog.wait();
                break;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !running.stderr_done.load(Ordering::SeqCst) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
}

/// Copies `stderr` into `log` line by line on a thread until EOF.
fn drain(stderr: impl Read + Send + 'static, log: Arc<Mutex<String>>, done: Arc<AtomicBool>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let mut log = lock(&log);
                    if log.len() < MAX_KEPT_STDERR {
                        log.push_str(&String::from_utf8_lossy(&line));
                        if !log.ends_with('\n') {
                            log.push('\n');
                        }
                    }
                }
            }
        }
        done.store(true, Ordering::SeqCst);
    });
}

fn read_pid(stdout: &mut impl Read) -> u32 {
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reading the router pid from the watchdog");
    line.trim()
        .parse()
        .unwrap_or_else(|_| panic!("the watchdog printed no pid: {line:?}"))
}

/// The address of the first `listening ... addr=HOST:PORT` line in `log`.
fn listening_addr(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter(|line| line.contains("listening"))
        .find_map(|line| {
            let rest = line.split("addr=").nth(1)?;
            let addr = rest.split_whitespace().next()?.trim_matches('"');
            addr.parse().ok()
        })
}

/// The port of the first `bind = "HOST:PORT"` in configuration text.
fn port_in(config: &str) -> Option<u16> {
    config
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("bind ") || line.starts_with("bind="))?
        .rsplit(':')
        .next()?
        .trim_matches(|c: char| c == '"' || c.is_whitespace())
        .parse()
        .ok()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
