//! One node's keep-alive connections ([`Pool`]): which connection a
//! request takes, which are kept for later and which are dropped.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

use crate::payload::PayloadBody;

/// How long a connection may sit unused in a pool before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most connections a node's pool keeps.
pub const MAX_POOLED: usize = 256;

/// One node's keep-alive connections, oldest use first.
///
/// A connection goes back into the pool as soon as its request is handed to
/// it; until its answer has been read, hyper reports it as not ready and
/// [`Pool::take`] passes over it. Closed connections and those unused for
/// [`IDLE_TIMEOUT`] are dropped when met.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<VecDeque<Pooled>>,
}

#[derive(Debug)]
struct Pooled {
    sender: SendRequest<PayloadBody>,
    used: Instant,
}

impl Pool {
    /// A connection that can take a request now, if the pool has one.
    pub(super) fn take(&self) -> Option<SendRequest<PayloadBody>> {
        let mut idle = self.idle.lock().ok()?;
        let now = Instant::now();
        for _ in 0..idle.len() {
            let pooled = idle.pop_front()?;
            if pooled.sender.is_closed() || now.duration_since(pooled.used) > IDLE_TIMEOUT {
                continue;
            }
            if pooled.sender.is_ready() {
                return Some(pooled.sender);
            }
            idle.push_back(pooled);
        }
        None
    }

    /// Keeps `sender` for a later request, unless it is closed or the pool is full.
    pub(super) fn put(&self, sender: SendRequest<PayloadBody>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_POOLED {
                idle.push_back(Pooled {
                    sender,
                    used: Instant::now(),
                });
            }
        }
    }

    /// How many connections the pool holds (busy or idle).
    pub fn len(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
