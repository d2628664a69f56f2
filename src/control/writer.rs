//! Batched line-protocol writes to one or more destination nodes, a few
//! batches in flight at once. A batch that fails for a passing reason (no
//! answer, 5xx, 429) is retried with backoff; a node that still fails is
//! dropped from the copy and named in the summary, and the copy goes on to
//! the others. When no node is left the copy fails.

use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;

use super::influx::{Influx, WriteFailure};
use super::ControlError;

/// Batches in flight at once (over all destinations).
const IN_FLIGHT: usize = 4;
/// Tries per batch for passing failures.
const ATTEMPTS: u32 = 4;

/// The destinations of a copy.
pub struct Writers {
    targets: Vec<Target>,
    in_flight: JoinSet<(usize, Result<(), WriteFailure>)>,
}

struct Target {
    influx: Influx,
    failure: Option<String>,
}

impl Writers {
    pub fn new(targets: Vec<Influx>) -> Writers {
        Writers {
            targets: targets
                .into_iter()
                .map(|influx| Target {
                    influx,
                    failure: None,
                })
                .collect(),
            in_flight: JoinSet::new(),
        }
    }

    /// The nodes written to.
    pub fn influxes(&self) -> impl Iterator<Item = &Influx> {
        self.targets.iter().map(|t| &t.influx)
    }

    /// Sends `batch` to every node still in the copy; waits while too many
    /// batches are in flight.
    pub async fn send(&mut self, db: &str, rp: &str, batch: Bytes) -> Result<(), ControlError> {
        for i in 0..self.targets.len() {
            if self.targets[i].failure.is_some() {
                continue;
            }
            while self.in_flight.len() >= IN_FLIGHT {
                self.reap_one().await?;
            }
            let influx = self.targets[i].influx.clone();
            let (db, rp, batch) = (db.to_string(), rp.to_string(), batch.clone());
            self.in_flight
                .spawn(async move { (i, write_with_retry(&influx, &db, &rp, batch).await) });
        }
        self.any_left()
    }

    /// Waits until every batch sent so far has been answered.
    pub async fn drain(&mut self) -> Result<(), ControlError> {
        while !self.in_flight.is_empty() {
            self.reap_one().await?;
        }
        self.any_left()
    }

    async fn reap_one(&mut self) -> Result<(), ControlError> {
        match self.in_flight.join_next().await {
            Some(Ok((i, Err(failure)))) => {
                if self.targets[i].failure.is_none() {
                    self.targets[i].failure = Some(failure.message);
                }
            }
            Some(Ok((_, Ok(())))) | None => {}
            Some(Err(e)) => return Err(ControlError::Failed(format!("a write task failed: {e}"))),
        }
        self.any_left()
    }

    fn any_left(&self) -> Result<(), ControlError> {
        if self.targets.iter().any(|t| t.failure.is_none()) {
            return Ok(());
        }
        Err(ControlError::Failed(self.failures().join("; ")))
    }

    /// Whether some node has dropped out of the copy.
    pub fn any_failed(&self) -> bool {
        self.targets.iter().any(|t| t.failure.is_some())
    }

    /// Why each node that dropped out did.
    pub fn failures(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter_map(|t| t.failure.clone())
            .collect()
    }
}

async fn write_with_retry(
    influx: &Influx,
    db: &str,
    rp: &str,
    batch: Bytes,
) -> Result<(), WriteFailure> {
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match influx.write(db, rp, batch.clone()).await {
            Ok(()) => return Ok(()),
            Err(failure) if failure.retryable && attempt < ATTEMPTS => {
                tracing::warn!(node = %influx.label(), attempt, error = %failure.message, "write failed; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(failure) => return Err(failure),
        }
    }
}
