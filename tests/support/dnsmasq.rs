//! `dnsmasq` as a real DNS server for SRV discovery tests: it serves SRV
//! records for [`RECORD`] on a free loopback port, and is restarted with
//! other records to change them (it does not re-read `--srv-host` on SIGHUP).
//!
//! `dnsmasq` comes from Debian's `dnsmasq-base` package
//! (`apt-get install -y dnsmasq-base`; `./scripts/test.sh` installs it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const RECORD: &str = "_http._tcp.influx.test";

/// The `dnsmasq` binary: on `PATH`, or in the sbin directories that are not
/// on an ordinary user's `PATH`.
pub fn dnsmasq_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("dnsmasq"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "dnsmasq not found on PATH or in /usr/sbin: this test needs a real DNS server. \
                 Install it with `apt-get install -y dnsmasq-base` (or run ./scripts/test.sh, \
                 which does so)"
            )
        })
}

/// A `dnsmasq` serving SRV records for [`RECORD`] on 127.0.0.1:`port`,
/// killed on drop.
pub struct Dnsmasq {
    port: u16,
    child: Option<Child>,
}

impl Dnsmasq {
    pub fn start(port: u16, targets: &[u16]) -> Dnsmasq {
        let mut dns = Dnsmasq { port, child: None };
        dns.restart(targets);
        dns
    }

    /// (Re)starts the server on the same port with SRV records `localhost:<port>`
    /// for each of `targets` (dnsmasq does not re-read `--srv-host` on SIGHUP).
    pub fn restart(&mut self, targets: &[u16]) {
        let mut records: Vec<String> = targets
            .iter()
            .map(|port| format!("--srv-host={RECORD},localhost,{port},0,0"))
            .collect();
        if targets.is_empty() {
            // an SRV name with no record: answered, but with nothing in it
            records.push(format!("--srv-host={RECORD}"));
        }
        self.restart_with(&records);
    }

    /// (Re)starts the server on the same port with these record options.
    pub fn restart_with(&mut self, records: &[String]) {
        self.stop();
        let mut command = Command::new(dnsmasq_binary());
        command.args([
            "--no-daemon".to_string(),
            format!("--port={}", self.port),
            "--listen-address=127.0.0.1".into(),
            "--bind-interfaces".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--conf-file=/dev/null".into(),
            "--local-ttl=0".into(),
            "--pid-file=".into(),
        ]);
        command.args(records);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dnsmasq: {e}"));
        // it is listening once it has logged its start; a bind failure ends it
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(Some(status)) = child.try_wait() {
            let mut log = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                use std::io::Read;
                let _ = stderr.read_to_string(&mut log);
            }
            panic!("dnsmasq exited at start ({status}): {log}");
        }
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}
