//! Running `influxdb-router admin …` as a child process for the data-command
//! tests: each [`Admin`] has a temporary directory that is the command's
//! working directory (so a default state file never lands in the source
//! tree) and, when given clusters, a configuration file for `-c`.
//! Also: reading RFC 3339 times and `[start, end)` windows out of output.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_influxdb-router");

/// One finished command.
#[derive(Debug, Clone)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout and stderr together, for messages and searching.
    pub fn output(&self) -> String {
        format!(
            "admin {}\n--- exit {} ---\n--- stdout ---\n{}--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    /// Panics with the whole output unless the exit status is `code`.
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "{}", self.output());
        self
    }
}

/// A cluster of the configuration file.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub credentials: Option<(String, String)>,
    /// (name, url, mode)
    pub nodes: Vec<(String, String, String)>,
}

impl Cluster {
    pub fn new(name: &str) -> Cluster {
        Cluster {
            name: name.into(),
            credentials: None,
            nodes: Vec::new(),
        }
    }

    pub fn credentials(mut self, user: &str, password: &str) -> Cluster {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    pub fn node(mut self, name: &str, url: &str, mode: &str) -> Cluster {
        self.nodes.push((name.into(), url.into(), mode.into()));
        self
    }
}

/// The place commands run in.
pub struct Admin {
    dir: TempDir,
    config: Option<PathBuf>,
}

impl Admin {
    /// Commands without a configuration file.
    pub fn new() -> Admin {
        let dir = tempfile::Builder::new()
            .prefix("admin-test-")
            .tempdir()
            .expect("a temporary directory");
        Admin { dir, config: None }
    }

    /// Commands with `-c` naming a file that holds `clusters` (the first is the default).
    pub fn with_clusters(clusters: &[Cluster]) -> Admin {
        Admin::with_clusters_and(clusters, "", "")
    }

    /// Like [`with_clusters`](Self::with_clusters), with `routing` (TOML
    /// lines) added to `[routing]` and `extra` (whole sections) at the end.
    pub fn with_clusters_and(clusters: &[Cluster], routing: &str, extra: &str) -> Admin {
        let mut admin = Admin::new();
        let mut toml = format!(
            "[buffer]\ndir = {:?}\n\n[routing]\ndefault_cluster = {:?}\n{routing}",
            admin.path("buffer").display().to_string(),
            clusters[0].name
        );
        for c in clusters {
            toml.push_str(&format!("\n[[cluster]]\nname = {:?}\n", c.name));
            if let Some((user, password)) = &c.credentials {
                toml.push_str(&format!("username = {user:?}\npassword = {password:?}\n"));
            }
            let nodes: Vec<String> = c
                .nodes
                .iter()
                .map(|(n, url, mode)| {
                    format!("  {{ name = {n:?}, url = {url:?}, mode = {mode:?} }}")
                })
                .collect();
            toml.push_str(&format!("nodes = [\n{}\n]\n", nodes.join(",\n")));
        }
        toml.push_str(extra);
        let path = admin.path("router.toml");
        std::fs::write(&path, toml).expect("write the configuration");
        admin.config = Some(path);
        admin
    }

    /// A path inside the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.arg("admin");
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("INFLUXDB_ROUTER_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        command
    }

    /// Runs `admin ARGS` to the end (on a blocking thread).
    pub async fn run(&self, args: &[&str]) -> Run {
        let mut command = self.command(args);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join")
            .expect("the binary runs");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Run {
            args,
            code: output.status.code().unwrap_or(-1),
            stdout: text(&output.stdout),
            stderr: text(&output.stderr),
        }
    }

    /// Starts `admin ARGS` with `RUST_LOG=info`, stdout discarded and
    /// stderr (its log) appended to `log`.
    pub fn spawn_logged(&self, args: &[&str], log: &Path) -> Child {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the log file");
        self.command(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the binary starts")
    }

    /// Starts `admin ARGS`, output discarded.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts")
    }
}

impl Default for Admin {
    fn default() -> Self {
        Admin::new()
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` in nanoseconds since 1970.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let t = text.trim();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = t.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if t.get(4..5)? != "-" || !matches!(t.get(10..11)?, "T" | "t" | " ") {
        return None;
    }
    let mut rest = &t[19..];
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let padded = format!("{:0<9}", &frac[..digits.min(9)]);
        nanos = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    Some(secs * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `[start, end)` window in a line of output, in nanoseconds.
pub fn window_in(line: &str) -> Option<(i64, i64)> {
    let open = line.find('[')?;
    let close = open + line[open..].find(')')?;
    let (start, end) = line[open + 1..close].split_once(',')?;
    Some((parse_rfc3339(start)?, parse_rfc3339(end)?))
}

/// The number after `label` in `text` (`1,234` read as 1234).
pub fn number_before(text: &str, label: &str) -> Option<u64> {
    let at = text.find(label)?;
    let digits: String = text[..at]
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
