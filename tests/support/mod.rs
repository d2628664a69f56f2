//! Shared support code for the integration tests, used as `mod support;`.
//!
//! The harness owns two kinds of stand-ins for the InfluxDB 1.x servers that
//! the router sits in front of:
//!
//! * [`Influxd`]: a real `influxd` (1.6.x from Debian) child process with its
//!   own temporary directory, configuration file, data, WAL and log, bound to
//!   two free ephemeral ports (HTTP and RPC) on 127.0.0.1. It can be stopped
//!   and started again on the same ports with the same data, to show what the
//!   router does when a node goes away and comes back.
//! * [`FakeNode`]: an in-process hyper HTTP/1.1 server that speaks just enough
//!   of the InfluxDB HTTP API (`/ping`, `/write`, `/query`) and can be switched
//!   at run time into faults a real server cannot be made to show on demand:
//!   error statuses, slowness, stalls and connections reset in the middle of
//!   a response body. It records every request it receives so that tests can
//!   assert what the router forwarded.
//!
//! plus [`dnsmasq`] (a real DNS server for SRV records), [`dataset`], [`compare`] and [`admin`] for the `admin` data-command
//! tests (the data they copy, comparing two servers answer by answer,
//! running the command), [`jobs`] (a key prefix of its own on Redis and
//! RabbitMQ for the job-queue tests, worker processes, job records),
//! [`prometheus`] (a real Prometheus server as a remote storage client),
//! [`router`], which starts the router under test in-process on
//! 127.0.0.1:0 with a generated configuration, [`tls`] (test certificates
//! and an HTTPS client), and two small helpers, [`free_port`] and
//! [`wait_until`].
//!
//! Ground rules:
//!
//! * Everything binds to and talks to 127.0.0.1 only. The harness never
//!   targets any other host, and never a fixed, well-known port: a system
//!   `influxd` service, if one runs, is neither needed nor touched.
//! * Everything the harness starts is stopped when its handle is dropped,
//!   including on a panicking test: an [`Influxd`] kills its process (and a
//!   watchdog kills it even if the test process itself is killed), a
//!   [`FakeNode`] stops listening and drops its connections. Temporary
//!   directories are removed on drop as well.
//! * If `influxd` is not installed, [`Influxd::start`] panics with a message
//!   telling how to install it (`./scripts/test.sh` does that on its own).

// Every test binary compiles this module, but no test binary uses all of it.
#![allow(dead_code)]

pub mod admin;
pub mod compare;
pub mod dataset;
pub mod dnsmasq;
pub mod fake_node;
pub mod influxd;
pub mod jobs;
pub mod load;
pub mod prometheus;
pub mod router;
pub mod router_process;
pub mod tls;

#[allow(unused_imports)]
pub use fake_node::{Behaviour, FakeNode, Recorded};
#[allow(unused_imports)]
pub use influxd::Influxd;

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago: bound to port 0, read
/// back and released. Someone else may take it before the caller binds it,
/// so callers that can retry on "address in use" should.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot bind an ephemeral port on 127.0.0.1")
}

/// Two distinct ports on 127.0.0.1 that were free a moment ago (both are held
/// at the same time while being picked, so they always differ).
pub(crate) fn free_port_pair() -> (u16, u16) {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind an ephemeral port");
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind an ephemeral port");
    let ports = (
        a.local_addr().expect("local_addr").port(),
        b.local_addr().expect("local_addr").port(),
    );
    drop((a, b));
    ports
}

/// Polls `cond` every 20 ms until it returns `true` or `timeout` has passed.
/// Returns whether the condition became true; `cond` is always evaluated at
/// least once, and once more at the deadline.
///
/// ```ignore
/// assert!(wait_until(Duration::from_secs(5), || async { node.write_count() == 2 }).await);
/// ```
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20).min(deadline - now)).await;
    }
}
