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
use super::pieces::{Piece, Selection};
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
/// to `ledger`; comparisons always run in full. With `contain`, a
/// destination may hold more than the source (data that reached it from
/// elsewhere, like a measurement moving in from two clusters): a piece that
/// still differs passes when copying the source's piece into it once more
/// leaves it exactly as it was — every point of the source is already there,
/// with the same values.
#[allow(clippy::too_many_arguments)]
pub async fn converge(
    src: &Influx,
    dst: &[Influx],
    databases: &[String],
    selection: &Selection,
    ledger: &mut dyn Ledger,
    display: Display,
    rounds: u32,
    contain: bool,
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
    let mut settled = settle(src, dst, databases, selection, rounds).await?;
    if contain {
        accept_contained(src, dst, selection, &mut settled).await?;
    }
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

/// Drops from `settled` the differences whose destination piece already
/// contains the source's (see [`converge`]); a piece in which live writes
/// land meanwhile is tried a few times.
async fn accept_contained(
    src: &Influx,
    dst: &[Influx],
    selection: &Selection,
    settled: &mut Settled,
) -> Result<(), ControlError> {
    for (node, report) in dst.iter().zip(settled.verified.iter_mut()) {
        let mut left = Vec::new();
        for difference in std::mem::take(&mut report.differences) {
            if !contains(src, node, &difference, selection).await? {
                left.push(difference);
            }
        }
        report.equal = left.is_empty();
        report.differences = left;
    }
    Ok(())
}

/// Whether `dst` holds every point of the piece of `difference` that `src` has.
async fn contains(
    src: &Influx,
    dst: &Influx,
    difference: &Difference,
    selection: &Selection,
) -> Result<bool, ControlError> {
    if difference.dst_points < difference.src_points {
        return Ok(false);
    }
    let piece = Piece {
        db: difference.db.clone(),
        rp: difference.rp.clone(),
        measurement: difference.measurement.clone(),
        window: Range {
            start: difference.start_ns,
            end: difference.end_ns,
        },
    };
    for _ in 0..3 {
        let before = verify::digest(dst, &piece, true).await?;
        repair(src, dst, difference, selection).await?;
        if verify::digest(dst, &piece, true).await? == before {
            return Ok(true);
        }
        tokio::time::sleep(SETTLE).await;
    }
    Ok(false)
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
