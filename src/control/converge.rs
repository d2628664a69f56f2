//! Copy, verify, repair: the step rebalance and recover-node share.
//!
//! [`converge`] copies a selection from one server to one or more others
//! ([`backfill::copy`], resumable through the caller's ledger), then
//! compares every destination with the source ([`verify::compare`]). While
//! data flows live, a comparison can catch a write on its way to one side
//! only; so each piece that differs is copied again, alone, and compared
//! again, up to `rounds` times, with a pause between rounds. What still
//! differs after that is an error that lists the differences, and the
//! caller deletes nothing.

use std::time::Duration;

use crate::config::glob::Glob;

use super::backfill::{self, BackfillReport};
use super::influx::Influx;
use super::ledger::{Forgetful, Ledger};
use super::pieces::Selection;
use super::progress::Display;
use super::time::Range;
use super::verify::{self, Difference, VerifyReport};
use super::ControlError;

/// Repair rounds after the first comparison, by default.
pub const REPAIR_ROUNDS: u32 = 3;

/// How long to wait before comparing again, so writes in flight land.
const SETTLE: Duration = Duration::from_secs(2);

/// What a [`converge`] did.
#[derive(Debug, Clone)]
pub struct ConvergeReport {
    /// The copy of the whole selection.
    pub copied: BackfillReport,
    /// Pieces copied again because they differed.
    pub repaired: u64,
    /// The last comparison of each destination (all equal on success).
    pub verified: Vec<VerifyReport>,
}

impl ConvergeReport {
    /// One line for a job record or a terminal.
    pub fn summary(&self) -> String {
        let points: u64 = self
            .verified
            .iter()
            .map(|v| v.dst_points)
            .max()
            .unwrap_or(0);
        format!(
            "{}; verified {} destination(s), {} points, {} piece(s) repaired",
            self.copied.summary,
            self.verified.len(),
            points,
            self.repaired
        )
    }
}

/// Copies `selection` of `databases` from `src` to every server of `dst`,
/// then compares and repairs as the module says. Finished copy pieces go
/// to `ledger`; comparisons always run in full.
pub async fn converge(
    src: &Influx,
    dst: &[Influx],
    databases: &[String],
    selection: &Selection,
    ledger: &mut dyn Ledger,
    display: Display,
    rounds: u32,
) -> Result<ConvergeReport, ControlError> {
    let copied = backfill::copy(
        src,
        dst.to_vec(),
        databases,
        selection,
        ledger,
        display.clone(),
    )
    .await?;
    copied.outcome()?;
    let settled = settle(src, dst, databases, selection, rounds).await?;
    settled.outcome(rounds)?;
    Ok(ConvergeReport {
        copied,
        repaired: settled.repaired,
        verified: settled.verified,
    })
}

/// What [`settle`] found in the end.
#[derive(Debug, Clone)]
pub struct Settled {
    /// Pieces copied again because they differed.
    pub repaired: u64,
    /// The last comparison of each destination.
    pub verified: Vec<VerifyReport>,
}

impl Settled {
    /// Whether every destination equals the source.
    pub fn equal(&self) -> bool {
        self.verified.iter().all(|v| v.equal)
    }

    /// The differences that remain, as [`VerifyReport::text`] lines.
    pub fn differences(&self) -> String {
        let text: String = self
            .verified
            .iter()
            .filter(|v| !v.equal)
            .map(VerifyReport::text)
            .collect();
        text.trim_end().to_string()
    }

    /// `Err` listing the differences when some remain after `rounds`.
    pub fn outcome(&self, rounds: u32) -> Result<(), ControlError> {
        if self.equal() {
            return Ok(());
        }
        Err(ControlError::Failed(format!(
            "verify still finds differences after {rounds} repair round(s); nothing was \
             deleted or switched:\n{}",
            self.differences()
        )))
    }
}

/// The verify and repair half of [`converge`], for a caller that copied
/// already (or copied another range than it verifies): compares every
/// destination with the source over `selection`, copies each differing
/// piece again, up to `rounds` times. Returns what the last comparison
/// found, equal or not.
pub async fn settle(
    src: &Influx,
    dst: &[Influx],
    databases: &[String],
    selection: &Selection,
    rounds: u32,
) -> Result<Settled, ControlError> {
    let mut repaired = 0;
    let mut round = 0;
    loop {
        let mut verified = Vec::with_capacity(dst.len());
        for node in dst {
            verified.push(verify::compare(src, node, databases, selection, Display::Quiet).await?);
        }
        if verified.iter().all(|v| v.equal) || round == rounds {
            return Ok(Settled { repaired, verified });
        }
        round += 1;
        tokio::time::sleep(SETTLE).await;
        for (node, report) in dst.iter().zip(&verified) {
            for difference in &report.differences {
                repaired += repair(src, node, difference, selection).await?;
            }
        }
    }
}

/// Copies the piece of one difference again, from `src` to `dst`.
async fn repair(
    src: &Influx,
    dst: &Influx,
    difference: &Difference,
    selection: &Selection,
) -> Result<u64, ControlError> {
    if difference.start_ns >= difference.end_ns {
        return Ok(0);
    }
    let range = Range {
        start: difference.start_ns,
        end: difference.end_ns,
    };
    let measurement = Glob::literal(&difference.measurement).map_err(ControlError::Failed)?;
    let piece = Selection {
        rp: Some(difference.rp.clone()),
        measurement: Some(measurement),
        range: selection.range.intersect(range).unwrap_or(range),
        window: None,
    };
    let report = backfill::copy(
        src,
        vec![dst.clone()],
        std::slice::from_ref(&difference.db),
        &piece,
        &mut Forgetful::default(),
        Display::Quiet,
    )
    .await?;
    report.outcome()?;
    Ok(1)
}
