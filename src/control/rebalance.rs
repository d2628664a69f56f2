//! `admin rebalance --db DB [--measurement GLOB] [--plan]` (a command and
//! a job kind): after a routing change, moves every measurement of `DB`
//! held by a cluster that no longer owns it to its owner, without reads
//! ever missing data (SPEC section 8).
//!
//! For each move (see [`super::moves`]), in order, each step recorded so a
//! rerun resumes where the last one stopped:
//!
//! 1. **publish**: the `[[move]]` is put in the routing document (state
//!    `copying`) and announced; routers write the measurement to both
//!    clusters and read it from the old one. With the file source the
//!    command prints the entries to add and stops until they are there.
//! 2. **copy and verify**: [`converge`] from a node of the old cluster to
//!    every write-enabled node of the new one (repairing pieces that a
//!    live write left different); a difference that stays stops the
//!    rebalance with the difference, and nothing is deleted.
//! 3. **done**: the move's state becomes `done`; reads go to the new owner
//!    alone and writes no longer to the old cluster. The routers'
//!    receipts are waited for before anything is deleted.
//! 4. **delete**: `DROP MEASUREMENT` on every node of the old cluster (the
//!    measurement moved whole), then the `[[move]]` is removed.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::config::glob::Glob;
use crate::config::{Config, MoveState, RoutingSource};
use crate::routing::source::redis as store;

use super::converge::{converge, REPAIR_ROUNDS};
use super::http::HttpClient;
use super::influx::{ident, Influx};
use super::ledger::{self, Ledger};
use super::moves::{self, Move};
use super::pieces::Selection;
use super::progress::Display;
use super::receipts;
use super::time::Range;
use super::ControlError;

/// The arguments of `admin rebalance`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RebalanceArgs {
    /// The database whose measurements are moved to their owners
    #[arg(long = "db", value_name = "DB", required_unless_present = "plan")]
    pub db: Option<String>,
    /// Only measurements matching this glob
    #[arg(long, value_name = "GLOB")]
    pub measurement: Option<String>,
    /// Only print the moves the routing table in force implies, as
    /// `[[move]]` entries (for a file-based table), and change nothing
    #[arg(long)]
    pub plan: bool,
    /// The file recording finished steps (default: under [buffer] dir, named after the arguments)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Forget what the state file records and start over
    #[arg(long)]
    pub restart: bool,
}

/// What a rebalance did.
#[derive(Debug, Clone, Default)]
pub struct RebalanceReport {
    /// Moves found.
    pub moves: usize,
    /// Moves finished (copied, verified, switched, deleted).
    pub finished: usize,
    /// Points copied.
    pub points: u64,
    /// What the operator has to do next (file source), if anything.
    pub instructions: String,
    pub summary: String,
}

/// Runs `admin rebalance`; finished steps go to `ledger` when given (a
/// job's), else to the state file.
pub async fn run(
    config: &Config,
    args: &RebalanceArgs,
    display: Display,
    ledger: Option<&mut dyn Ledger>,
) -> Result<RebalanceReport, ControlError> {
    let glob = args
        .measurement
        .as_deref()
        .map(|m| Glob::new(m).map_err(|e| ControlError::Usage(format!("--measurement: {e}"))))
        .transpose()?;
    let databases: Vec<String> = args.db.iter().cloned().collect();
    let table = super::endpoint::routing_table(config).await?;
    let planned = moves::plan(&table, &databases, glob.as_ref()).await?;
    if args.plan {
        return Ok(plan_report(&table, &planned));
    }
    let db = args.db.clone().unwrap_or_default();
    let work = format!(
        "rebalance db={db:?} measurement={:?}",
        args.measurement.as_deref().unwrap_or("*")
    );
    let mut file_ledger = None;
    let ledger = ledger::given_or_file(
        ledger,
        &mut file_ledger,
        args.state.as_deref(),
        args.restart,
        &config.buffer.dir,
        "rebalance",
        &work,
    )?;
    let mut report = RebalanceReport {
        moves: planned.len(),
        ..Default::default()
    };
    let mut rebalance = Rebalance {
        config,
        table,
        ledger,
        display,
        report: &mut report,
    };
    // entries of this database that no data needs any more (moved by hand,
    // dropped, or the rules changed again) stop sending writes to `from`
    for stale in stale_entries(&rebalance.table, &db, glob.as_ref(), &planned) {
        rebalance.forget_entry(&stale).await?;
    }
    if planned.is_empty() {
        report.summary =
            format!("rebalance {db}: every measurement lives on its owner; nothing to move");
        return Ok(report);
    }
    rebalance.publish(&planned).await?;
    for m in &planned {
        rebalance.carry_out(m).await?;
    }
    let waiting = !report.instructions.is_empty();
    report.summary = format!(
        "rebalance {db}: {} move(s), {} finished, {} points copied{}",
        report.moves,
        report.finished,
        report.points,
        if waiting {
            "; the rest waits for the routing file (see above)"
        } else {
            ""
        }
    );
    Ok(report)
}

/// The `[[move]]` entries of `db` (one measurement each, as rebalance
/// writes them; within `glob`) that none of the `planned` moves is.
fn stale_entries(table: &Config, db: &str, glob: Option<&Glob>, planned: &[Move]) -> Vec<Move> {
    table
        .moves
        .iter()
        .filter_map(|entry| {
            let m = Move {
                database: db.to_string(),
                measurement: unescape(entry.measurement.as_ref()?.as_str())?,
                from: entry.from.clone(),
                to: entry.to.clone(),
            };
            let ours = m.is(entry) && glob.map_or(true, |g| g.is_match(&m.measurement));
            (ours && !planned.contains(&m)).then_some(m)
        })
        .collect()
}

/// The name a literal glob (`Glob::literal`) matches; `None` for a pattern.
fn unescape(pattern: &str) -> Option<String> {
    let mut name = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => name.push(chars.next()?),
            '*' | '?' | '[' => return None,
            c => name.push(c),
        }
    }
    Some(name)
}

/// `--plan`: the `[[move]]` entries the table lacks, and the ones it has.
fn plan_report(table: &Config, planned: &[Move]) -> RebalanceReport {
    let mut text = String::new();
    for m in planned {
        match m.entry(table) {
            Some(entry) if m.is(entry) => {
                let _ = writeln!(text, "# already listed ({}): {m}", entry.state.as_str());
            }
            _ => {
                let _ = writeln!(text, "{}", m.toml(MoveState::Copying));
            }
        }
    }
    RebalanceReport {
        moves: planned.len(),
        summary: format!(
            "{}{} move(s) implied by the routing table in force",
            text,
            planned.len()
        ),
        ..Default::default()
    }
}

struct Rebalance<'a> {
    config: &'a Config,
    /// The routing table in force, re-read after each change of it.
    table: Config,
    ledger: &'a mut dyn Ledger,
    display: Display,
    report: &'a mut RebalanceReport,
}

impl Rebalance<'_> {
    fn redis(&self) -> bool {
        self.config.routing.source == RoutingSource::Redis
    }

    /// Step 1 for every move at once: the routing document lists them all.
    async fn publish(&mut self, planned: &[Move]) -> Result<(), ControlError> {
        if !self.redis() {
            let missing: Vec<&Move> = planned
                .iter()
                .filter(|m| !m.entry(&self.table).is_some_and(|e| m.is(e)))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let blocks: String = missing
                .iter()
                .map(|m| m.toml(MoveState::Copying) + "\n")
                .collect();
            return Err(ControlError::Failed(format!(
                "the routing file does not list these moves yet; add them, let the routers \
                 reload it, then run rebalance again (nothing was copied or deleted):\n\n{blocks}"
            )));
        }
        let changed = self
            .update_document("rebalance: publish moves", |document| {
                // the document as stored now (another change may have come)
                let table = store::validate(document, "the stored routing document")
                    .map_err(|problems| problems.join("; "))?;
                Ok(moves::add(document, &table, planned, None))
            })
            .await?;
        if changed.is_some() {
            self.reread().await?;
        }
        Ok(())
    }

    /// Steps 2 to 4 for one move.
    async fn carry_out(&mut self, m: &Move) -> Result<(), ControlError> {
        let deleted = format!("deleted {m}");
        let verified = format!("verified {m}");
        if self.ledger.done(&deleted).is_some() {
            self.forget_entry(m).await?;
            self.report.finished += 1;
            return Ok(());
        }
        let state = m
            .entry(&self.table)
            .filter(|e| m.is(e))
            .map(|e| e.state)
            .unwrap_or(MoveState::Copying);
        if state == MoveState::Copying {
            if self.ledger.done(&verified).is_none() {
                let points = self.copy_and_verify(m).await?;
                self.report.points += points;
                self.ledger
                    .record(&verified, serde_json::json!({ "points": points }))?;
            }
            if !self.redis() {
                let _ = writeln!(
                    self.report.instructions,
                    "{m}: copied and verified; set state = \"done\" in its [[move]] entry, let the \
                     routers reload, then run rebalance again to delete it from {}",
                    m.from
                );
                return Ok(());
            }
            self.set_done(m).await?;
        }
        if self.ledger.done(&verified).is_none() {
            return Err(ControlError::Failed(format!(
                "{m}: the move is marked done but this rebalance has no clean verify of it on \
                 record (another state file?); nothing was deleted. Set its state back to \
                 \"copying\" and run rebalance again"
            )));
        }
        self.delete(m).await?;
        self.ledger.record(&deleted, serde_json::json!({}))?;
        self.forget_entry(m).await?;
        self.report.finished += 1;
        Ok(())
    }

    /// Step 2: copy, verify, repair.
    async fn copy_and_verify(&mut self, m: &Move) -> Result<u64, ControlError> {
        let from = super::endpoint::find_cluster(&self.table, &m.from)?;
        let src = moves::reader(&self.table, from).await?;
        let http = HttpClient::new().map_err(ControlError::Failed)?;
        let dst: Vec<Influx> = moves::writers(&self.table, &m.to)
            .await?
            .into_iter()
            .map(|e| Influx::new(e, http.clone()))
            .collect();
        if dst.is_empty() {
            return Err(ControlError::Failed(format!(
                "{m}: cluster {:?} has no node that takes writes",
                m.to
            )));
        }
        let selection = Selection {
            rp: None,
            measurement: Some(Glob::literal(&m.measurement).map_err(ControlError::Failed)?),
            range: Range::from_flags(None, None).map_err(ControlError::Failed)?,
            window: None,
        };
        let report = converge(
            &src,
            &dst,
            std::slice::from_ref(&m.database),
            &selection,
            &mut *self.ledger,
            self.display.clone(),
            REPAIR_ROUNDS,
            // the owner may hold more: writes that went to it directly, or
            // the same measurement moving in from another cluster
            true,
        )
        .await
        .map_err(|e| ControlError::Failed(format!("{m}: {e}")))?;
        Ok(report.copied.points)
    }

    /// Step 3: reads switch to the owner. Nothing is deleted until every
    /// live router reports the switch.
    async fn set_done(&mut self, m: &Move) -> Result<(), ControlError> {
        let lagging = self
            .update_document("rebalance: move done", |document| {
                moves::set_state(document, m, MoveState::Done)
            })
            .await?;
        self.reread().await?;
        if let Some(lagging) = lagging.filter(|l| !l.is_empty()) {
            return Err(ControlError::Failed(format!(
                "{m}: marked done, but routers {} have not reported the change yet, so nothing                  was deleted; run rebalance again",
                lagging.join(", ")
            )));
        }
        Ok(())
    }

    /// Step 4: the measurement is dropped on every node of the old cluster.
    async fn delete(&mut self, m: &Move) -> Result<(), ControlError> {
        let http = HttpClient::new().map_err(ControlError::Failed)?;
        let nodes = moves::all_nodes(&self.table, &m.from).await?;
        let statement = format!("DROP MEASUREMENT {}", ident(&m.measurement));
        let mut failed = Vec::new();
        for node in nodes {
            let server = Influx::new(node, http.clone());
            if let Err(e) = server.query(Some(&m.database), &statement).await {
                failed.push(format!("{}: {e}", server.label()));
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        Err(ControlError::Failed(format!(
            "{m}: copied, verified and switched, but not dropped everywhere on {} ({}); run \
             rebalance again once the node answers",
            m.from,
            failed.join("; ")
        )))
    }

    /// The `[[move]]` entry of a finished move leaves the document.
    async fn forget_entry(&mut self, m: &Move) -> Result<(), ControlError> {
        if !self.redis() {
            if m.entry(&self.table).is_some_and(|e| m.is(e)) {
                let _ = writeln!(
                    self.report.instructions,
                    "{m}: finished; remove its [[move]] entry from the routing file"
                );
            }
            return Ok(());
        }
        if self
            .update_document("rebalance: move finished", |document| {
                moves::remove(document, m)
            })
            .await?
            .is_some()
        {
            self.reread().await?;
        }
        Ok(())
    }

    /// Stores an edit of the Redis routing document and waits until every
    /// router follows it; `None` when the edit changed nothing, else the
    /// routers that had not followed when the wait timed out.
    async fn update_document(
        &mut self,
        origin: &str,
        mut edit: impl FnMut(&str) -> Result<Option<String>, String>,
    ) -> Result<Option<Vec<String>>, ControlError> {
        let routing = &self.config.routing;
        let pushed = store::update(
            &routing.redis_url,
            &routing.amqp_url,
            &routing.key_prefix,
            origin,
            |_, document| edit(document),
        )
        .await
        .map_err(|e| ControlError::Failed(format!("{origin}: {e}")))?;
        let Some(pushed) = pushed else {
            return Ok(None);
        };
        if let Err(e) = &pushed.notice {
            tracing::warn!(error = %e, "change notice not published; routers see the change at their next poll");
        }
        let version = pushed.version;
        let fail = |e: String| {
            ControlError::Failed(format!(
                "cannot read the router receipts from Redis at {}: {e}",
                routing.redis_url
            ))
        };
        let conn = redis::Client::open(routing.redis_url.as_str())
            .map_err(|e| fail(e.to_string()))?
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let found = receipts::wait_for_receipts(
            &conn,
            &routing.key_prefix,
            routing.poll_interval,
            receipts::default_timeout(routing.poll_interval),
            |r| r.routing_version >= version,
        )
        .await?;
        if let Some(warning) = found.warning(&format!("routing version {version}")) {
            tracing::warn!("{warning}");
        }
        Ok(Some(found.lagging))
    }

    async fn reread(&mut self) -> Result<(), ControlError> {
        self.table = super::endpoint::routing_table(self.config).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_no_planned_move_needs_are_stale() {
        let text = r#"
[routing]
default_cluster = "a"
[[cluster]]
name = "a"
nodes = [{ name = "a1", url = "http://127.0.0.1:1" }]
[[cluster]]
name = "b"
nodes = [{ name = "b1", url = "http://127.0.0.1:2" }]
[[move]]
database = "big"
measurement = "cpu"
from = "a"
to = "b"
[[move]]
database = "big"
measurement = "m\\*x"
from = "a"
to = "b"
[[move]]
database = "big"
measurement = "disk*"
from = "a"
to = "b"
"#;
        let table = Config::from_toml_str(text, "t").unwrap();
        let m = |name: &str| Move {
            database: "big".into(),
            measurement: name.into(),
            from: "a".into(),
            to: "b".into(),
        };
        // cpu still has to move; m*x does not; a pattern is not ours to drop
        assert_eq!(stale_entries(&table, "big", None, &[m("cpu")]), [m("m*x")]);
        assert_eq!(stale_entries(&table, "other", None, &[]), []);
        let only_cpu = Glob::new("c*").unwrap();
        assert_eq!(
            stale_entries(&table, "big", Some(&only_cpu), &[]),
            [m("cpu")]
        );
        assert_eq!(unescape("m\\*x").as_deref(), Some("m*x"));
        assert_eq!(unescape("disk*"), None);
    }
}
