//! The pieces that long commands work through: one database, retention
//! policy, measurement and time window each, windows being the shard
//! groups that hold data (from `SHOW SHARDS` where the credentials allow,
//! else the measurement's first and last point cut at the policy's
//! shard-group boundaries, which is where InfluxDB cuts them). A window
//! therefore never spans two shards, so a field whose type differs between
//! shards is read with each point's own type.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::glob::Glob;

use super::answer::JsonSeries;
use super::influx::{ident, Influx};
use super::schema::Database;
use super::time::{parse_time, windows, Range};
use super::ControlError;

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Piece {
    pub db: String,
    pub rp: String,
    pub measurement: String,
    pub window: Range,
}

impl Piece {
    /// The name the ledger records it under.
    pub fn key(&self) -> String {
        serde_json::to_string(&(
            &self.db,
            &self.rp,
            &self.measurement,
            self.window.start,
            self.window.end,
        ))
        .unwrap_or_default()
    }

    /// `"db"."rp"."measurement"`.
    pub fn source(&self) -> String {
        format!(
            "{}.{}.{}",
            ident(&self.db),
            ident(&self.rp),
            ident(&self.measurement)
        )
    }

    /// The query that reads every point of the piece exactly: fields only
    /// (a tag and a field may share a name), one series per tag set.
    pub fn select(&self) -> String {
        format!(
            "SELECT *::field FROM {} WHERE {} GROUP BY *",
            self.source(),
            self.window.condition()
        )
    }
}

impl std::fmt::Display for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{} {}",
            self.db, self.rp, self.measurement, self.window
        )
    }
}

/// The flags that choose what a data command reads, shared by `backfill`,
/// `verify` and `backup`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScopeArgs {
    /// Only this database (repeatable; default: all but _internal)
    #[arg(long = "db", value_name = "DB")]
    pub databases: Vec<String>,
    /// Only this retention policy (default: every one)
    #[arg(long, value_name = "RP")]
    pub rp: Option<String>,
    /// Only measurements matching this glob (`cpu*`)
    #[arg(long, value_name = "GLOB")]
    pub measurement: Option<String>,
    /// From this time on (RFC 3339 or integer nanoseconds; included)
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub start: Option<String>,
    /// Up to this time (excluded)
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub end: Option<String>,
}

impl ScopeArgs {
    /// The checked selection (a bad glob or range is a usage error).
    pub fn selection(&self) -> Result<Selection, ControlError> {
        let range = Range::from_flags(self.start.as_deref(), self.end.as_deref())
            .map_err(ControlError::Usage)?;
        let measurement = self
            .measurement
            .as_deref()
            .map(|m| Glob::new(m).map_err(|e| ControlError::Usage(format!("--measurement: {e}"))))
            .transpose()?;
        Ok(Selection {
            rp: self.rp.clone(),
            measurement,
            range,
            window: None,
        })
    }
}

/// Which pieces to list.
#[derive(Debug, Clone)]
pub struct Selection {
    pub rp: Option<String>,
    pub measurement: Option<Glob>,
    pub range: Range,
    /// Windows of this many nanoseconds instead of shard groups (`verify --window`).
    pub window: Option<i64>,
}

/// Every piece of `databases` on `server` that `selection` covers.
pub async fn list(
    server: &Influx,
    databases: &[Database],
    selection: &Selection,
) -> Result<Vec<Piece>, ControlError> {
    let groups = shard_groups(server).await;
    let mut pieces = BTreeSet::new();
    for db in databases {
        let measurements = measurements(server, &db.name, selection.measurement.as_ref()).await?;
        for rp in &db.retention_policies {
            if selection.rp.as_ref().is_some_and(|want| *want != rp.name) {
                continue;
            }
            let cut = |range: Range| match selection.window {
                Some(w) => windows(range, w),
                None => windows(range, rp.shard_duration_ns),
            };
            match &groups {
                Some(groups) => {
                    let spans = groups
                        .get(&(db.name.clone(), rp.name.clone()))
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    for span in spans {
                        let Some(span) = span.intersect(selection.range) else {
                            continue;
                        };
                        for window in cut(span) {
                            for m in &measurements {
                                pieces.insert(Piece {
                                    db: db.name.clone(),
                                    rp: rp.name.clone(),
                                    measurement: m.clone(),
                                    window,
                                });
                            }
                        }
                    }
                }
                None => {
                    for m in &measurements {
                        let Some(span) =
                            extent(server, &db.name, &rp.name, m, selection.range).await?
                        else {
                            continue;
                        };
                        for window in cut(span) {
                            pieces.insert(Piece {
                                db: db.name.clone(),
                                rp: rp.name.clone(),
                                measurement: m.clone(),
                                window,
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(pieces.into_iter().collect())
}

/// The measurements of `db` matching `glob`.
pub async fn measurements(
    server: &Influx,
    db: &str,
    glob: Option<&Glob>,
) -> Result<Vec<String>, ControlError> {
    let q = format!("SHOW MEASUREMENTS ON {}", ident(db));
    let series = server.query_one(None, &q).await?;
    Ok(series
        .iter()
        .flat_map(|s| {
            s.values
                .iter()
                .filter_map(|row| row.first()?.as_str().map(String::from))
        })
        .filter(|m| glob.map_or(true, |g| g.is_match(m)))
        .collect())
}

/// Shard groups per (database, policy) from `SHOW SHARDS`, or `None` when
/// the credentials may not list them.
async fn shard_groups(server: &Influx) -> Option<BTreeMap<(String, String), Vec<Range>>> {
    let series = server.query_one(None, "SHOW SHARDS").await.ok()?;
    let mut out: BTreeMap<(String, String), BTreeSet<Range>> = BTreeMap::new();
    for s in &series {
        for row in &s.values {
            let text = |col: &str| s.get(row, col).as_str().unwrap_or("").to_string();
            let (Ok(start), Ok(end)) = (
                parse_time(&text("start_time")),
                parse_time(&text("end_time")),
            ) else {
                continue;
            };
            if start < end {
                out.entry((text("database"), text("retention_policy")))
                    .or_default()
                    .insert(Range { start, end });
            }
        }
    }
    Some(
        out.into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect(),
    )
}

/// The time from the first to just past the last point of a measurement in `range`.
async fn extent(
    server: &Influx,
    db: &str,
    rp: &str,
    measurement: &str,
    range: Range,
) -> Result<Option<Range>, ControlError> {
    let source = format!("{}.{}.{}", ident(db), ident(rp), ident(measurement));
    let edge = |order: &str| {
        format!(
            "SELECT * FROM {source} WHERE {} ORDER BY time {order} LIMIT 1",
            range.condition()
        )
    };
    let first = first_time(server.query_one(Some(db), &edge("ASC")).await?);
    let last = first_time(server.query_one(Some(db), &edge("DESC")).await?);
    Ok(match (first, last) {
        (Some(first), Some(last)) => range.intersect(Range {
            start: first,
            end: last.saturating_add(1),
        }),
        _ => None,
    })
}

fn first_time(series: Vec<JsonSeries>) -> Option<i64> {
    let s = series.first()?;
    let row = s.values.first()?;
    let value = s.get(row, "time");
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|t| parse_time(t).ok()))
}
