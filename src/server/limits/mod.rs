//! `[limits]`: rate limits per client address, per user and per database,
//! and a bound on each client's concurrent queries. Over a limit the
//! request is answered 429 with `Retry-After` and `{"error":"…"}` naming
//! the limit, and nothing of it is forwarded or queued.
//!
//! * [`bucket`]: the token bucket (one `u64`) and its arithmetic.
//! * [`keyed`]: buckets per client address or user, in a bounded map that
//!   forgets idle keys.
//! * [`identity`]: the user a request names, as a bucket key.
//!
//! Where the limits are taken:
//!
//! * `client_requests` and `client_queries` in [`super::handle`], before
//!   anything else is done with the request ([`Limiter::admit`]). The client
//!   address is the TCP peer's; no header can change it.
//! * The bytes limits right after a body is read (and, gzip, inflated to
//!   count it; a Prometheus body by the size its snappy header declares),
//!   before anything is sent to a node or a queue
//!   ([`charge_body`]): `client_bytes`, then `user_bytes`, then
//!   `database_bytes` (the first glob in the file's order that matches the
//!   database; every database it matches shares its bucket). A body one of
//!   them refuses is given back to those that took it.
//! * A query's place among its client's `client_queries` (a `/query` or an
//!   `/api/v1/prom/read`) is held until the answer is sent, to its last
//!   byte when it streams from a node.
//!
//! With no `[limits]` the router holds no [`Limiter`] (`Shared::limiter`
//! is `None`) and the request path costs one `Option` check per stage.

pub mod bucket;
pub mod identity;
pub mod keyed;

use std::collections::HashMap;
use std::hash::RandomState;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::Extensions;

use super::error::ApiError;
use super::Shared;
use crate::config::glob::Glob;
use crate::config::{Limit, LimitsConfig};
use crate::monitor::Endpoint;
use bucket::{Rate, SECOND};
use identity::Claimed;
use keyed::Keyed;

/// The client's address (the TCP peer's), put into each request's
/// extensions while limits are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The limits in force and their buckets.
#[derive(Debug)]
pub struct Limiter {
    epoch: Instant,
    client_requests: Option<Keyed<IpAddr>>,
    client_bytes: Option<Keyed<IpAddr>>,
    user_bytes: Option<Keyed<u64>>,
    /// Keys the user buckets' hash.
    user_keys: RandomState,
    database_bytes: Vec<DatabaseBucket>,
    client_queries: Option<Arc<Queries>>,
}

/// The shared bucket of one `database_bytes` glob.
#[derive(Debug)]
struct DatabaseBucket {
    glob: Glob,
    rate: Rate,
    full_at: Mutex<u128>,
}

/// Queries running now, per client address (an address leaves the map
/// with its last query, so it holds at most one entry per open connection).
#[derive(Debug)]
struct Queries {
    max: u32,
    running: Mutex<HashMap<IpAddr, u32>>,
}

/// A query's place among its client's `client_queries`, given back on drop.
#[derive(Debug)]
pub struct QueryPermit {
    queries: Arc<Queries>,
    client: IpAddr,
}

/// Why a request is refused, for the client and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limit,
    /// Whole seconds until the request would be taken (at least 1).
    pub retry_after: u64,
    pub message: String,
}

/// Who sent a body and where it goes: what the bytes limits are keyed by.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub client: Option<IpAddr>,
    pub user: Option<&'a Claimed>,
    pub database: &'a str,
}

impl Limiter {
    /// The limiter for `config`; `None` when every limit is off.
    pub fn new(config: &LimitsConfig) -> Option<Limiter> {
        if config.is_off() {
            return None;
        }
        let database_bytes = config
            .database_bytes
            .iter()
            .map(|(glob, rate)| DatabaseBucket {
                glob: glob.clone(),
                rate: Rate::new(*rate),
                full_at: Mutex::new(0),
            });
        let queries = config.client_queries.map(|max| Queries {
            max,
            running: Mutex::new(HashMap::new()),
        });
        Some(Limiter {
            epoch: Instant::now(),
            client_requests: keyed(config.client_requests),
            client_bytes: keyed(config.client_bytes),
            user_bytes: keyed(config.user_bytes),
            user_keys: RandomState::new(),
            database_bytes: database_bytes.collect(),
            client_queries: queries.map(Arc::new),
        })
    }

    /// Nanoseconds since the limiter was built: the buckets' clock.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Lets a request in under `client_requests` and, for a query, under
    /// `client_queries` (the permit must live as long as its answer).
    pub fn admit(
        &self,
        client: IpAddr,
        endpoint: Endpoint,
    ) -> Result<Option<QueryPermit>, Refusal> {
        self.admit_at(client, endpoint, self.now())
    }

    /// [`Limiter::admit`] at `now` on the buckets' clock.
    fn admit_at(
        &self,
        client: IpAddr,
        endpoint: Endpoint,
        now: u64,
    ) -> Result<Option<QueryPermit>, Refusal> {
        if let Some(requests) = &self.client_requests {
            requests.take(client, now, 1).map_err(|wait| {
                let rate = requests.rate().per_second();
                let message = format!("client {client} may send {rate} requests per second");
                refusal(Limit::ClientRequests, wait, message)
            })?;
        }
        match (&self.client_queries, endpoint) {
            (Some(queries), Endpoint::Query | Endpoint::PromRead) => {
                queries.enter(client).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Takes `bytes` of a body from every bytes limit that applies to
    /// `sender`, or none of them.
    pub fn take_bytes(&self, sender: Sender<'_>, bytes: u64) -> Result<(), Refusal> {
        match bytes {
            0 => Ok(()),
            _ => self.take_bytes_at(sender, bytes, self.now()),
        }
    }

    /// [`Limiter::take_bytes`] at `now` on the buckets' clock.
    fn take_bytes_at(&self, sender: Sender<'_>, bytes: u64, now: u64) -> Result<(), Refusal> {
        let refused = |refusal: Refusal| refusal.with_body(bytes);
        let client = self
            .take_client_bytes(sender.client, now, bytes)
            .map_err(refused)?;
        let user = self
            .take_user_bytes(sender.user, now, bytes)
            .inspect_err(|_| self.give_back(client, None, bytes))
            .map_err(refused)?;
        self.take_database_bytes(sender.database, now, bytes)
            .inspect_err(|_| self.give_back(client, user, bytes))
            .map_err(refused)
    }

    /// `client_bytes`; the address taken from, if any.
    fn take_client_bytes(
        &self,
        client: Option<IpAddr>,
        now: u64,
        bytes: u64,
    ) -> Result<Option<IpAddr>, Refusal> {
        let (Some(bucket), Some(address)) = (&self.client_bytes, client) else {
            return Ok(None);
        };
        bucket.take(address, now, bytes).map_err(|wait| {
            let rate = bucket.rate().per_second();
            let message = format!("client {address} may send {rate} body bytes per second");
            refusal(Limit::ClientBytes, wait, message)
        })?;
        Ok(Some(address))
    }

    /// `user_bytes`; the key taken from, if any.
    fn take_user_bytes(
        &self,
        user: Option<&Claimed>,
        now: u64,
        bytes: u64,
    ) -> Result<Option<u64>, Refusal> {
        let (Some(bucket), Some(user)) = (&self.user_bytes, user) else {
            return Ok(None);
        };
        let key = user.key(&self.user_keys);
        bucket.take(key, now, bytes).map_err(|wait| {
            let name = crate::protocol::response::truncate(&user.user, 64);
            let rate = bucket.rate().per_second();
            let message = format!("user {name:?} may send {rate} body bytes per second");
            refusal(Limit::UserBytes, wait, message)
        })?;
        Ok(Some(key))
    }

    /// Gives `bytes` back to the client's and the user's buckets, where taken.
    fn give_back(&self, client: Option<IpAddr>, user: Option<u64>, bytes: u64) {
        if let (Some(bucket), Some(address)) = (&self.client_bytes, client) {
            bucket.give_back(address, bytes);
        }
        if let (Some(bucket), Some(key)) = (&self.user_bytes, user) {
            bucket.give_back(key, bytes);
        }
    }

    /// `database_bytes`: the first glob that matches `database`.
    fn take_database_bytes(&self, database: &str, now: u64, bytes: u64) -> Result<(), Refusal> {
        let Some(db) = self
            .database_bytes
            .iter()
            .find(|b| b.glob.is_match(database))
        else {
            return Ok(());
        };
        let mut full_at = db.full_at.lock().unwrap_or_else(|p| p.into_inner());
        bucket::take(&mut full_at, now, db.rate, bytes).map_err(|wait| {
            let message = format!(
                "databases matching {:?} may receive {} body bytes per second",
                db.glob.as_str(),
                db.rate.per_second()
            );
            refusal(Limit::DatabaseBytes, wait, message)
        })
    }
}

/// Buckets of `rate` per key, when the limit is set.
fn keyed<K: std::hash::Hash + Eq + Copy>(rate: Option<u64>) -> Option<Keyed<K>> {
    rate.map(|r| Keyed::new(Rate::new(r)))
}

impl Queries {
    fn enter(self: &Arc<Self>, client: IpAddr) -> Result<QueryPermit, Refusal> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let count = running.entry(client).or_insert(0);
        if *count >= self.max {
            let message = format!("client {client} may run {} queries at a time", self.max);
            return Err(refusal(Limit::ClientQueries, SECOND, message));
        }
        *count += 1;
        Ok(QueryPermit {
            queries: self.clone(),
            client,
        })
    }
}

impl Drop for QueryPermit {
    fn drop(&mut self) {
        let mut running = self
            .queries
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = running.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.client);
            }
        }
    }
}

fn refusal(limit: Limit, wait: u64, message: String) -> Refusal {
    Refusal {
        limit,
        retry_after: bucket::whole_seconds(wait),
        message,
    }
}

impl Refusal {
    fn with_body(mut self, bytes: u64) -> Refusal {
        self.message
            .push_str(&format!(" (this body: {bytes} bytes)"));
        self
    }

    /// The error the client gets: over which limit, and when to retry.
    fn into_error(self) -> ApiError {
        let Refusal {
            limit,
            retry_after,
            message,
        } = self;
        ApiError::TooManyRequests {
            message: format!(
                "over limits.{}: {message}; retry after {retry_after} s",
                limit.as_str()
            ),
            retry_after,
        }
    }
}

/// Counts a refusal in `/metrics` and makes it the client's answer.
pub fn refuse(shared: &Shared, refusal: Refusal) -> ApiError {
    shared.monitor.limited(refusal.limit);
    refusal.into_error()
}

/// Takes a body's `bytes` (inflated size for gzip) from the bytes limits
/// of its sender before anything of it is forwarded; `extensions` are the
/// request's (they hold the client address), `user` the credentials it
/// carries, `database` where it goes.
pub fn charge_body(
    shared: &Shared,
    extensions: &Extensions,
    user: impl FnOnce() -> Option<Claimed>,
    database: &str,
    bytes: u64,
) -> Result<(), ApiError> {
    let Some(limiter) = &shared.limiter else {
        return Ok(());
    };
    let user = limiter.user_bytes.as_ref().and_then(|_| user());
    let sender = Sender {
        client: extensions.get::<ClientAddr>().map(|c| c.0),
        user: user.as_ref(),
        database,
    };
    limiter
        .take_bytes(sender, bytes)
        .map_err(|refusal| refuse(shared, refusal))
}

#[cfg(test)]
mod tests;
