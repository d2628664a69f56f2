//! `admin cq-backfill --db DB --cq NAME --start T --end T`: runs a
//! continuous query's `SELECT … INTO` over past time, window by window, so
//! that a new CQ covers history the way it covers time from now on.
//!
//! The CQ's text is read from each target node (`SHOW CONTINUOUS QUERIES`)
//! and taken apart by [`super::cq`]; every target must have the same text.
//! The targets are every write-enabled node of every cluster that may hold
//! DB under the routing table in force, or `--to`. The statement is sent to
//! each node directly, so each computes from its own data into itself (a
//! replica computes its own copy; a shard cluster its own share), with the
//! cluster's credentials.
//!
//! `[start, end)` is widened to whole GROUP BY intervals (start down, end
//! up; the summary says so) and cut into windows of several intervals
//! ([`CqSelect::intervals_per_statement`]). Each window finished on a node
//! is recorded in a [`Ledger`] (the state file, or a job's record), so
//! running the same command again resumes; a window redone after a crash
//! writes the same points again, which InfluxDB keeps once.

use std::path::PathBuf;

use crate::config::Config;

use super::answer::JsonSeries;
use super::cq::CqSelect;
use super::endpoint::{self, Allow, Endpoint};
use super::http::HttpClient;
use super::influx::Influx;
use super::ledger::{self, Ledger};
use super::progress::{thousands, Display, Progress};
use super::schema;
use super::time::{format_time, Range};
use super::ControlError;

/// The most statements (windows) one run may take.
const MAX_WINDOWS: usize = 1_000_000;

/// The arguments of `admin cq-backfill`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CqBackfillArgs {
    /// The database of the continuous query
    #[arg(long, value_name = "DB")]
    pub db: String,
    /// The continuous query's name
    #[arg(long, value_name = "NAME")]
    pub cq: String,
    /// From this time on (RFC 3339 or integer nanoseconds; aligned down to its interval)
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub start: String,
    /// Up to this time (excluded; aligned up to its interval)
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub end: String,
    /// Run it on these nodes instead: a node URL, CLUSTER/NODE, or CLUSTER
    /// (default: every write-enabled node of every cluster holding DB)
    #[arg(long, value_name = "DST")]
    pub to: Option<String>,
    /// The file recording finished windows (default: under [buffer] dir, named after the arguments)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Forget what the state file records and start over
    #[arg(long)]
    pub restart: bool,
}

/// What a cq-backfill did.
#[derive(Debug, Clone)]
pub struct CqBackfillReport {
    /// `[start, end)` widened to whole intervals.
    pub range: Range,
    /// Windows (statements per node).
    pub windows: u64,
    /// Windows every node had finished in an earlier run.
    pub windows_skipped: u64,
    /// Points written (InfluxDB's `written` counts), over all nodes.
    pub points: u64,
    /// The nodes it ran on.
    pub nodes: Vec<String>,
    /// Nodes that dropped out, with why.
    pub failed_nodes: Vec<String>,
    pub summary: String,
    pub state_file: Option<PathBuf>,
}

impl CqBackfillReport {
    /// `Err` naming the nodes that dropped out, if any did.
    pub fn outcome(&self) -> Result<(), ControlError> {
        super::nodes_dropped_out(
            "cq-backfill",
            &self.failed_nodes,
            "the other nodes finished",
        )
    }
}

/// The nodes the statements run on (for the job's node locks too).
pub async fn targets(
    config: &Config,
    args: &CqBackfillArgs,
) -> Result<Vec<Endpoint>, ControlError> {
    let mut nodes = match &args.to {
        Some(to) => endpoint::resolve(to, config, Allow::NodeOrCluster).await?,
        None => endpoint::holding(config, &args.db).await?,
    };
    let mut seen = std::collections::HashSet::new();
    nodes.retain(|n| seen.insert(n.base.clone()));
    Ok(nodes)
}

/// Runs `admin cq-backfill`: finished windows go to `ledger` when given (a
/// job's, in Redis), else to the state file.
pub async fn run(
    config: &Config,
    args: &CqBackfillArgs,
    display: Display,
    ledger: Option<&mut dyn Ledger>,
) -> Result<CqBackfillReport, ControlError> {
    if args.db.is_empty() {
        return Err(ControlError::Usage("--db needs a database name".into()));
    }
    if args.cq.is_empty() {
        return Err(ControlError::Usage(
            "--cq needs a continuous query name".into(),
        ));
    }
    let range =
        Range::from_flags(Some(&args.start), Some(&args.end)).map_err(ControlError::Usage)?;
    let targets = targets(config, args).await?;
    if targets.is_empty() {
        return Err(ControlError::Failed(format!(
            "no node to run it on for database {:?}",
            args.db
        )));
    }
    let http = HttpClient::new().map_err(ControlError::Failed)?;
    let nodes: Vec<Influx> = targets
        .into_iter()
        .map(|e| Influx::new(e, http.clone()))
        .collect();
    let cq = read_cq(&nodes, &args.db, &args.cq).await?;
    let windows = cq
        .windows(range, MAX_WINDOWS)
        .map_err(ControlError::Usage)?;
    let aligned = cq.aligned(range);
    let bases: Vec<&str> = nodes.iter().map(|n| n.endpoint.base.as_str()).collect();
    let work = format!(
        "cq-backfill db={:?} cq={:?} on {} range={aligned} select={}",
        args.db,
        args.cq,
        bases.join(","),
        cq.select()
    );
    let mut file_ledger = None;
    let ledger = ledger::given_or_file(
        ledger,
        &mut file_ledger,
        args.state.as_deref(),
        args.restart,
        &config.buffer.dir,
        "cq-backfill",
        &work,
    )?;
    let mut report = backfill(
        &nodes, &args.db, &args.cq, &cq, range, &windows, ledger, display,
    )
    .await?;
    report.state_file = file_ledger.map(|l| l.path().to_path_buf());
    Ok(report)
}

/// The continuous query `name` on `db`, the same on every node.
async fn read_cq(nodes: &[Influx], db: &str, name: &str) -> Result<CqSelect, ControlError> {
    let mut first: Option<(String, &str)> = None;
    for node in nodes {
        let cqs = schema::continuous_queries(node).await?;
        let on_db = cqs.get(db).map(Vec::as_slice).unwrap_or_default();
        let Some(found) = on_db.iter().find(|c| c.name == name) else {
            let names: Vec<String> = on_db.iter().map(|c| format!("{:?}", c.name)).collect();
            let has = if names.is_empty() {
                "it has none".to_string()
            } else {
                format!("it has {}", names.join(", "))
            };
            return Err(ControlError::Failed(format!(
                "{}: no continuous query {name:?} on database {db:?} ({has})",
                node.label()
            )));
        };
        match &first {
            None => first = Some((found.query.clone(), node.label())),
            Some((text, label)) if *text != found.query => {
                return Err(ControlError::Failed(format!(
                    "continuous query {name:?} on {db:?} differs: {label} has `{text}`, {} has `{}`; \
                     make them the same (sync-schema) first",
                    node.label(),
                    found.query
                )))
            }
            Some(_) => {}
        }
    }
    let (text, _) = first.ok_or_else(|| ControlError::Failed("no node to read it from".into()))?;
    CqSelect::parse(&text, name, db).map_err(|e| {
        ControlError::Failed(format!(
            "continuous query {name:?} on {db:?} cannot be backfilled: {e}"
        ))
    })
}

/// Runs `cq` over `windows` on every node, skipping what `ledger` has.
#[allow(clippy::too_many_arguments)]
async fn backfill(
    nodes: &[Influx],
    db: &str,
    name: &str,
    cq: &CqSelect,
    asked: Range,
    windows: &[Range],
    ledger: &mut dyn Ledger,
    display: Display,
) -> Result<CqBackfillReport, ControlError> {
    let mut progress = Progress::counting("windows", "cq-backfill", windows.len() as u64, display);
    let mut failed: Vec<Option<String>> = vec![None; nodes.len()];
    for window in windows {
        let statement = cq.statement(*window);
        let mut skipped = true;
        for (node, failure) in nodes.iter().zip(failed.iter_mut()) {
            if failure.is_some() {
                continue;
            }
            let key = format!("{} {} {}", node.endpoint.base, window.start, window.end);
            if ledger.done(&key).is_some() {
                continue;
            }
            skipped = false;
            match run_window(node, db, &statement).await {
                Ok(written) => {
                    ledger.record(&key, serde_json::json!({ "written": written }))?;
                    progress.add(written, 0);
                }
                Err(e) => {
                    progress.note(&format!("{}: dropped out: {e}", node.label()));
                    *failure = Some(e.to_string());
                }
            }
        }
        if failed.iter().all(Option::is_some) {
            progress.finish();
            let first = failed.into_iter().flatten().next().unwrap_or_default();
            return Err(ControlError::Failed(format!(
                "cq-backfill failed on every node: {first}"
            )));
        }
        progress.piece_done(skipped);
    }
    progress.finish();
    let labels: Vec<String> = nodes.iter().map(|n| n.label().to_string()).collect();
    let failed_nodes: Vec<String> = nodes
        .iter()
        .zip(&failed)
        .filter_map(|(n, f)| f.as_ref().map(|e| format!("{}: {e}", n.label())))
        .collect();
    let range = cq.aligned(asked);
    let aligned = if range == asked {
        String::new()
    } else {
        format!(
            " (--start {} / --end {} aligned to whole {} intervals)",
            format_time(asked.start),
            format_time(asked.end),
            super::time::influxql_duration(cq.interval)
        )
    };
    let per = match &cq.one_interval {
        Some(why) => format!("one interval each: {why}"),
        None => format!("up to {} intervals each", cq.intervals_per_statement()),
    };
    let skipped = if progress.pieces_skipped > 0 {
        format!(
            "; {} skipped as done before (--restart redoes them)",
            progress.pieces_skipped
        )
    } else {
        String::new()
    };
    let summary = format!(
        "cq-backfill: {name:?} on {db:?} over {range}{aligned}: {} ({per}) on {}, \
         {} points written in {:.1} s{skipped}",
        count(windows.len(), "window"),
        count(nodes.len(), "node"),
        thousands(progress.points),
        progress.elapsed().as_secs_f64()
    );
    Ok(CqBackfillReport {
        range,
        windows: windows.len() as u64,
        windows_skipped: progress.pieces_skipped,
        points: progress.points,
        nodes: labels,
        failed_nodes,
        summary,
        state_file: None,
    })
}

/// "1 window", "2 windows".
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Runs one window's statement; the points InfluxDB says it wrote.
async fn run_window(node: &Influx, db: &str, statement: &str) -> Result<u64, ControlError> {
    let answer = node.query(Some(db), statement).await?;
    Ok(written(
        answer.first().map(Vec::as_slice).unwrap_or_default(),
    ))
}

/// The sum of `written` in the `result` series of a `SELECT … INTO` answer.
fn written(series: &[JsonSeries]) -> u64 {
    series
        .iter()
        .filter(|s| s.name == "result")
        .flat_map(|s| s.values.iter().map(move |row| s.get(row, "written")))
        .filter_map(serde_json::Value::as_u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_counts_come_from_the_result_series() {
        let answer = br#"{"results":[{"statement_id":0,"series":[{"name":"result","columns":["time","written"],"values":[["1970-01-01T00:00:00Z",3]]}]}]}"#;
        let series = super::super::answer::statement_series(answer).unwrap();
        assert_eq!(written(&series[0]), 3);
        assert_eq!(written(&[]), 0);
    }
}
