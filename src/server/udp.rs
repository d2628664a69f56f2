//! UDP line-protocol input (`server.udp_bind`, `server.udp_database`).
//!
//! Owns the UDP socket, its receive loop and the UDP counters. Each datagram
//! (up to 64 KiB, one or more lines) is read into one reused buffer and
//! checked with the line scanner ([`crate::protocol::line`]): every line must
//! scan, blank lines and comments are fine. A datagram that does not is
//! malformed: it is dropped whole, counted, and reported by a warning at most
//! once every [`REPORT_EVERY`] (how many were dropped since the last warning,
//! and the problem of the one that triggered it).
//!
//! Well-formed datagrams are gathered for up to [`BATCH_DELAY`] (or until
//! [`BATCH_BYTES`]) into one body, each ending in a newline, and handed to
//! [`write_payload`] for `udp_database` at consistency `any` and nanosecond
//! precision (InfluxDB's UDP default): the path every HTTP write takes, so
//! routing rules, replication and the durable queues apply unchanged. Like
//! InfluxDB's own UDP listener, the router thus writes UDP points in batches
//! rather than one request per datagram.
//!
//! The receive loop never waits for a write. At most [`MAX_IN_FLIGHT`]
//! batches are being written at once; while all of them are busy the next
//! batch keeps gathering, up to [`MAX_PENDING`] bytes, and datagrams beyond
//! that are dropped and counted as `dropped` (overload): memory stays
//! bounded and the socket keeps being read.
//!
//! Counters (datagrams received, `written`, `malformed`, `failed` — a batch
//! the nodes did not accept — and `dropped`, plus bytes) are in `/status`
//! under `udp` and go to the `metrics` facade as
//! `influxdb_router_udp_datagrams_total{result}` and
//! `influxdb_router_udp_bytes_total`. Nothing is logged per datagram.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderMap;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::write::{write_payload, WriteParams};
use super::{Shared, StartError};
use crate::config::{Config, Consistency};
use crate::payload::Payload;
use crate::protocol::line;

/// The largest datagram read whole (larger than any UDP payload over IPv4 or IPv6).
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// How long well-formed datagrams are gathered before they are written.
pub const BATCH_DELAY: Duration = Duration::from_millis(5);
/// A batch this large is written without waiting for [`BATCH_DELAY`].
pub const BATCH_BYTES: usize = 1 << 20;
/// Batches being written at once.
pub const MAX_IN_FLIGHT: usize = 8;
/// Most bytes gathered while every write is busy; datagrams beyond are dropped.
pub const MAX_PENDING: usize = 8 << 20;
/// At most one warning of each kind per this long.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);
/// The socket receive buffer asked for, to ride out bursts; the kernel caps
/// it at `net.core.rmem_max`.
pub const RECEIVE_BUFFER: usize = 8 << 20;

/// The UDP input of one router: its socket until the receive loop takes it,
/// its counters, and the loop's stop signal.
#[derive(Debug, Default)]
pub struct Udp {
    counters: Counters,
    addr: OnceLock<SocketAddr>,
    socket: Mutex<Option<UdpSocket>>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    failures: Mutex<Throttle>,
}

/// What became of the datagrams received.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    bytes: AtomicU64,
    written: AtomicU64,
    malformed: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// The `result` label of `influxdb_router_udp_datagrams_total`.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Written,
    Malformed,
    Failed,
    Dropped,
}

impl Counters {
    fn received(&self, bytes: usize) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        metrics::counter!("influxdb_router_udp_bytes_total").increment(bytes as u64);
    }

    fn count(&self, result: Fate, datagrams: u64) {
        let (counter, label) = match result {
            Fate::Written => (&self.written, "written"),
            Fate::Malformed => (&self.malformed, "malformed"),
            Fate::Failed => (&self.failed, "failed"),
            Fate::Dropped => (&self.dropped, "dropped"),
        };
        counter.fetch_add(datagrams, Ordering::Relaxed);
        metrics::counter!("influxdb_router_udp_datagrams_total", "result" => label)
            .increment(datagrams);
    }
}

impl Udp {
    /// Binds `server.udp_bind` when it is set; the receive loop starts with
    /// [`Udp::start`].
    pub async fn bind(&self, config: &Config) -> Result<(), StartError> {
        let Some(udp) = &config.server.udp else {
            return Ok(());
        };
        let bind_error = |error| StartError::Bind {
            addr: udp.bind,
            error,
        };
        let socket = open_socket(udp.bind).map_err(bind_error)?;
        let addr = socket.local_addr().map_err(bind_error)?;
        let _ = self.addr.set(addr);
        if let Ok(mut slot) = self.socket.lock() {
            *slot = Some(socket);
        }
        Ok(())
    }

    /// The bound address (port 0 resolved), when UDP input is configured.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.get().copied()
    }

    /// Starts the receive loop on the socket [`Udp::bind`] opened, if any.
    pub fn start(shared: &Arc<Shared>) {
        let socket = shared.udp.socket.lock().ok().and_then(|mut s| s.take());
        let (Some(socket), Some(config)) = (socket, shared.config.server.udp.as_ref()) else {
            return;
        };
        if let Some(addr) = shared.udp.addr() {
            tracing::info!(%addr, database = %config.database, "listening for UDP line protocol");
        }
        let receiver = Receiver {
            shared: shared.clone(),
            socket,
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            batch: Batch::default(),
            malformed: Throttle::default(),
            overload: Throttle::default(),
            errors: Throttle::default(),
        };
        let task = tokio::spawn(receiver.run(shared.udp.stop.clone()));
        if let Ok(mut slot) = shared.udp.task.lock() {
            *slot = Some(task);
        }
    }

    /// Stops reading; the batch gathered so far is still written (the
    /// caller's drain waits for it with the other background node sends).
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// The `udp` object of `/status` (`null` without UDP input).
    pub fn status(&self, config: &Config) -> Value {
        let Some(udp) = &config.server.udp else {
            return Value::Null;
        };
        let c = &self.counters;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        json!({
            "bind": self.addr().map(|a| a.to_string()).unwrap_or_else(|| udp.bind.to_string()),
            "database": udp.database,
            "received": get(&c.received),
            "bytes": get(&c.bytes),
            "written": get(&c.written),
            "malformed": get(&c.malformed),
            "failed": get(&c.failed),
            "dropped": get(&c.dropped),
        })
    }
}

/// A non-blocking UDP socket bound to `addr`, with a receive buffer of up
/// to [`RECEIVE_BUFFER`].
fn open_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(error) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::debug!(%error, "cannot enlarge the UDP receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Well-formed datagrams waiting to be written together.
#[derive(Debug, Default)]
struct Batch {
    chunks: Vec<Bytes>,
    bytes: usize,
    /// When the first datagram came in.
    since: Option<Instant>,
}

impl Batch {
    fn push(&mut self, chunk: Bytes) {
        self.bytes += chunk.len();
        self.chunks.push(chunk);
        self.since.get_or_insert_with(Instant::now);
    }

    /// When the batch should be written (`None` while it is empty).
    fn due(&self) -> Option<Instant> {
        let since = self.since?;
        Some(match self.bytes >= BATCH_BYTES {
            true => since,
            false => since + BATCH_DELAY,
        })
    }
}

/// The receive loop's state.
struct Receiver {
    shared: Arc<Shared>,
    socket: UdpSocket,
    permits: Arc<Semaphore>,
    batch: Batch,
    malformed: Throttle,
    overload: Throttle,
    errors: Throttle,
}

impl Receiver {
    /// Reads datagrams until `stop`, writing batches as they fall due.
    async fn run(mut self, stop: CancellationToken) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let due = self.batch.due();
            tokio::select! {
                _ = stop.cancelled() => break,
                permit = permit_at(due, &self.permits) => self.write_batch(permit),
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.take(&buf[..n], from),
                    Err(error) => self.receive_failed(error).await,
                },
            }
        }
        // the last batch is written even when every permit is taken: one more at most
        self.write_batch(None);
    }

    /// Checks one datagram and adds it to the batch, or counts it dropped.
    fn take(&mut self, datagram: &[u8], from: SocketAddr) {
        let udp = &self.shared.udp;
        udp.counters.received(datagram.len());
        let chunk = with_newline(datagram);
        if let Err(problem) = check(&chunk) {
            udp.counters.count(Fate::Malformed, 1);
            if let Some(dropped) = self.malformed.report() {
                tracing::warn!(from = %from, dropped_since_last_report = dropped, error = %problem, "malformed UDP datagrams dropped");
            }
            return;
        }
        if self.batch.bytes + chunk.len() > MAX_PENDING {
            udp.counters.count(Fate::Dropped, 1);
            if let Some(dropped) = self.overload.report() {
                tracing::warn!(
                    dropped_since_last_report = dropped,
                    in_flight = MAX_IN_FLIGHT,
                    pending_bytes = self.batch.bytes,
                    "UDP input overloaded: datagrams dropped while every write is busy"
                );
            }
            return;
        }
        self.batch.push(chunk);
    }

    /// Hands the gathered datagrams to the write path in a background task.
    fn write_batch(&mut self, permit: Option<OwnedSemaphorePermit>) {
        let batch = std::mem::take(&mut self.batch);
        if batch.chunks.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        self.shared.background.spawn(async move {
            let datagrams = batch.chunks.len() as u64;
            let outcome = deliver(&shared, Payload::from_chunks(batch.chunks)).await;
            drop(permit);
            shared.udp.delivered(datagrams, outcome);
        });
    }

    async fn receive_failed(&mut self, error: std::io::Error) {
        if let Some(failed) = self.errors.report() {
            tracing::warn!(%error, failed_since_last_report = failed, "cannot receive a UDP datagram");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A write permit once the batch is due (never while it is empty).
async fn permit_at(due: Option<Instant>, permits: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    let Some(due) = due else {
        return std::future::pending().await;
    };
    tokio::time::sleep_until(due).await;
    permits.clone().acquire_owned().await.ok()
}

/// Writes one batch through the write path: `Err` says why it was not accepted.
async fn deliver(shared: &Arc<Shared>, payload: Payload) -> Result<(), String> {
    let Some(config) = &shared.config.server.udp else {
        return Err("UDP input is not configured".into());
    };
    let params = WriteParams {
        db: config.database.clone(),
        precision: Some("n"),
        ..WriteParams::default()
    };
    let headers = HeaderMap::new();
    match write_payload(shared, &params, &headers, payload, Consistency::Any).await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status();
            let body = match response.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            let text = String::from_utf8_lossy(&body);
            Err(format!(
                "answered {status}: {}",
                crate::protocol::response::truncate(text.trim(), 300)
            ))
        }
        Err(error) => Err(error.to_string()),
    }
}

impl Udp {
    /// Counts a batch's datagrams by what became of them; warns about
    /// failures at most once every [`REPORT_EVERY`].
    fn delivered(&self, datagrams: u64, outcome: Result<(), String>) {
        let Err(error) = outcome else {
            self.counters.count(Fate::Written, datagrams);
            return;
        };
        self.counters.count(Fate::Failed, datagrams);
        let report = self
            .failures
            .lock()
            .ok()
            .and_then(|mut t| t.report_n(datagrams));
        if let Some(failed) = report {
            tracing::warn!(%error, failed_since_last_report = failed, "UDP datagrams not written: the write was not accepted");
        }
    }
}

/// `datagram` as it is forwarded: copied out of the receive buffer, with a
/// newline at the end so that it never runs into the next one in a batch.
fn with_newline(datagram: &[u8]) -> Bytes {
    let mut chunk = Vec::with_capacity(datagram.len() + 1);
    chunk.extend_from_slice(datagram);
    if !datagram.ends_with(b"\n") {
        chunk.push(b'\n');
    }
    Bytes::from(chunk)
}

/// Whether a datagram (ending in a newline) is line protocol as far as the
/// scanner checks, has at least one line, and can be followed by another
/// datagram in the same body.
pub fn check(chunk: &[u8]) -> Result<(), String> {
    let mut lines = 0;
    for found in line::lines(chunk) {
        found.map_err(|e| format!("unable to parse: {e}"))?;
        lines += 1;
    }
    if lines == 0 {
        return Err("no line protocol in the datagram: it is empty, blank or only comments".into());
    }
    // An odd run of backslashes before the final newline escapes it once
    // another datagram follows, and the two would run into one line.
    let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
    let backslashes = body.iter().rev().take_while(|&&b| b == b'\\').count();
    if backslashes % 2 == 1 {
        return Err(
            "unable to parse: the last line ends in a backslash, which escapes its newline".into(),
        );
    }
    Ok(())
}

/// Lets one log line through per [`REPORT_EVERY`] and counts the events in
/// between.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    /// Events since the last line that was let through.
    since: u64,
}

impl Throttle {
    /// One event: `Some(events since the last line, this one included)`
    /// when a line may be logged now.
    fn report(&mut self) -> Option<u64> {
        self.report_n(1)
    }

    fn report_n(&mut self, events: u64) -> Option<u64> {
        self.since += events;
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + REPORT_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(datagram: &str) -> Result<(), String> {
        check(&with_newline(datagram.as_bytes()))
    }

    #[test]
    fn datagrams_of_several_lines_with_comments_and_blank_lines_pass() {
        assert_eq!(checked("cpu v=1 1\ncpu v=2 2\n"), Ok(()));
        assert_eq!(
            checked("# c\n\ncpu,host=a v=1i,s=\"x\ny\" 3\r\nmem f=1"),
            Ok(())
        );
    }

    #[test]
    fn a_datagram_with_one_bad_line_is_malformed_and_names_the_line() {
        let error = checked("cpu v=1 1\nx\ncpu v=2 2").unwrap_err();
        assert!(
            error.starts_with("unable to parse: line 2: missing field set"),
            "{error}"
        );
        let error = checked("cpu s=\"open 1").unwrap_err();
        assert!(error.contains("unterminated string"), "{error}");
    }

    #[test]
    fn empty_blank_and_comment_only_datagrams_are_malformed() {
        for datagram in ["", "\n", "  \n\t\n", "# only a comment\n"] {
            let error = checked(datagram).unwrap_err();
            assert!(error.contains("no line protocol"), "{datagram:?}: {error}");
        }
    }

    #[test]
    fn a_datagram_ending_in_an_escaping_backslash_is_malformed() {
        assert!(checked("cpu v=1 1\\").unwrap_err().contains("backslash"));
        assert!(checked("cpu v=1 1\\\n").unwrap_err().contains("backslash"));
        assert!(checked("cpu v=1 1\\\\\\\n").is_err());
        // an escaped backslash escapes nothing after it
        assert_eq!(checked("cpu v=1 1\\\\\n"), Ok(()));
        // and a backslash before `\r` takes the `\r`, not the newline
        assert_eq!(checked("cpu v=1 1\\\r\n"), Ok(()));
    }

    #[test]
    fn a_datagram_is_forwarded_with_exactly_one_final_newline() {
        assert_eq!(&with_newline(b"a b=1")[..], b"a b=1\n");
        assert_eq!(&with_newline(b"a b=1\n")[..], b"a b=1\n");
    }

    #[test]
    fn batches_fall_due_after_the_delay_or_at_once_when_large() {
        let mut batch = Batch::default();
        assert_eq!(batch.due(), None);
        batch.push(Bytes::from_static(b"a b=1\n"));
        let since = batch.since.unwrap();
        assert_eq!(batch.due(), Some(since + BATCH_DELAY));
        batch.push(Bytes::from(vec![b'x'; BATCH_BYTES]));
        assert_eq!(batch.due(), Some(since));
    }

    #[test]
    fn the_throttle_lets_one_line_through_per_period_and_counts_the_rest() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.report(), Some(1));
        assert_eq!(throttle.report(), None);
        assert_eq!(throttle.report_n(3), None);
        throttle.last = throttle.last.and_then(|at| at.checked_sub(REPORT_EVERY));
        assert_eq!(throttle.report(), Some(5));
        assert_eq!(throttle.report(), None);
    }
}
