//! Merges the `/query` answers of several clusters into the answer one
//! InfluxDB server would have given.
//!
//! When a read spans clusters (a `FROM` list or regex matching measurements
//! that live on different clusters, `SHOW MEASUREMENTS` over sharded
//! clusters…), the router asks one node per cluster and merges the whole
//! (non-chunked) JSON answers with [`merge_answers`]:
//!
//! * **top-level error**: if any answer is `{"error":"…"}`, the merged answer
//!   is the first such error, as it stands;
//! * **statement error**: if any answer has an `error` for a statement, the
//!   merged statement is `{"statement_id":N,"error":"…"}` with the first
//!   error's text, unchanged (series of the other answers are dropped, as
//!   one server would not have sent any);
//! * otherwise each statement's series are merged as its [`MergePlan`] says
//!   ([`MergeKind`]): concatenated for `SELECT`, unioned and sorted for
//!   `SHOW`, summed for `SHOW … CARDINALITY`; then its `SLIMIT`/`SOFFSET` and
//!   `LIMIT`/`OFFSET` are applied again over the union ([`Limits`]);
//! * `partial` flags (statement and series) are kept: set when set in any
//!   answer; `messages` are unioned.
//!
//! The output is compact JSON with InfluxDB's key order (`statement_id`,
//! `series`, `messages`, `partial`, `error`; `name`, `tags`, `columns`,
//! `values`, `partial`), tags sorted by key, and a final newline, as
//! InfluxDB writes it.
//!
//! ## LIMIT and OFFSET across clusters
//!
//! `LIMIT n OFFSET m` cannot be left to the nodes: each would skip its own
//! first `m` rows. So the router sends each node [`rewrite_for_fanout`] of
//! the statement — `LIMIT n+m` without `OFFSET` (same for `SLIMIT`/`SOFFSET`)
//! — and merges with the plan of the **original** statement, which applies
//! `OFFSET m LIMIT n` to the union. A statement without `OFFSET` is sent
//! unchanged: applying its `LIMIT` again after the merge is what makes the
//! union one server's answer. Nothing else has to be stripped.
//!
//! ```
//! use influxdb_router::protocol::merge::{merge_answers, plans, rewrite_for_fanout};
//!
//! let q = "SHOW MEASUREMENTS LIMIT 2 OFFSET 1";
//! assert_eq!(rewrite_for_fanout(q).as_deref(), Some("SHOW MEASUREMENTS LIMIT 3"));
//! let a = br#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["disk"],["mem"]]}]}]}"#;
//! let b = br#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["net"]]}]}]}"#;
//! let merged = merge_answers(&[("a", &a[..]), ("b", &b[..])], &plans(q)).unwrap();
//! assert_eq!(
//!     String::from_utf8(merged).unwrap(),
//!     "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"measurements\",\
//!      \"columns\":[\"name\"],\"values\":[[\"disk\"],[\"mem\"]]}]}]}\n"
//! );
//! ```
//!
//! ## Limits of a merge
//!
//! Rows are merged, not recomputed: an aggregate over a measurement whose
//! series are spread over several clusters (sharding below the measurement)
//! comes back as one row per cluster for the same time, and `SHOW …
//! CARDINALITY` counts are summed, which over-counts values present on
//! several clusters. `SHOW DATABASES` and the other `SHOW` lists come back
//! sorted, where one server lists some of them in creation order.
//!
//! ## Layout
//!
//! `mod.rs` holds the entry points ([`merge_answers`], [`merge`], [`plans`])
//! and the per-statement rules (errors, flags, limits); its submodules:
//!
//! * `clauses`: a statement's outer `LIMIT`/`OFFSET`/`SLIMIT`/`SOFFSET` and
//!   `ORDER BY … DESC` ([`limits`], [`rewrite_for_fanout`]);
//! * `answer`: the JSON shapes ([`Answer`], [`StatementResult`], [`Series`])
//!   and InfluxDB's key order;
//! * `series`: concatenating `SELECT` series, unioning and summing `SHOW`
//!   series;
//! * `compare`: the orders of JSON values and `time` cells.

mod answer;
mod clauses;
mod compare;
mod series;

use std::collections::BTreeMap;

use serde_json::Value;

use super::influxql::{self, sources::show_kind};
use clauses::outer_clauses;
use series::{merge_select, merge_show, merge_sum};

pub use answer::{Answer, Series, StatementResult};
pub use clauses::{limits, rewrite_for_fanout};

/// Why answers could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A body is not JSON at all (truncated, HTML from a proxy, a chunked
    /// answer with several JSON documents…).
    #[error("answer from {node} is not valid JSON: {message}")]
    NotJson {
        /// The node that sent it.
        node: String,
        /// What the JSON parser said.
        message: String,
    },
    /// A body is JSON but not shaped like an InfluxDB `/query` answer.
    #[error("answer from {node} is not an InfluxDB query answer: {message}")]
    NotAnAnswer {
        /// The node that sent it.
        node: String,
        /// What does not fit.
        message: String,
    },
    /// There was nothing to merge.
    #[error("no answers to merge")]
    NoAnswers,
}

/// How the series of one statement are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeKind {
    /// `SELECT` (and `EXPLAIN`) across clusters: series concatenated in
    /// InfluxDB's series order (measurement name, then tags; reversed under
    /// `ORDER BY time DESC`). Series with the same name and tags from
    /// different answers become one, their rows merged by the `time` column
    /// (first column) when there is one, concatenated otherwise; differing
    /// columns are unioned, missing values are `null`.
    #[default]
    Series,
    /// `SHOW MEASUREMENTS`, `TAG KEYS`, `TAG VALUES`, `FIELD KEYS`, `SERIES`,
    /// `DATABASES`, `RETENTION POLICIES`, `USERS`…: rows of the series with
    /// the same name and tags unioned, deduplicated and sorted; series in
    /// name and tags order.
    ShowUnion,
    /// `SHOW … CARDINALITY`: the counts of series with the same name and
    /// tags added up, row by row and column by column.
    Sum,
}

/// The `LIMIT`, `OFFSET`, `SLIMIT` and `SOFFSET` of a statement's outermost
/// query. `None` when absent or zero (`LIMIT 0` means no limit in InfluxQL).
///
/// `limit`/`offset` apply to the rows of each series (points of a `SELECT`,
/// names of `SHOW MEASUREMENTS`, keys of each measurement in `SHOW TAG
/// KEYS`…), `slimit`/`soffset` to the series.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `LIMIT n`: at most `n` rows per series.
    pub limit: Option<usize>,
    /// `OFFSET n`: the first `n` rows of each series skipped.
    pub offset: Option<usize>,
    /// `SLIMIT n`: at most `n` series.
    pub slimit: Option<usize>,
    /// `SOFFSET n`: the first `n` series skipped.
    pub soffset: Option<usize>,
}

/// How to merge one statement: see [`plan`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MergePlan {
    /// How series are merged.
    pub kind: MergeKind,
    /// Applied after the merge.
    pub limits: Limits,
    /// `ORDER BY time DESC`: rows and series come in descending order.
    pub descending: bool,
}

/// The merge plan of one statement (its original text, not the
/// [`rewrite_for_fanout`] one): [`MergeKind::Sum`] for `SHOW … CARDINALITY`,
/// [`MergeKind::ShowUnion`] for other `SHOW` statements,
/// [`MergeKind::Series`] for everything else; its [`limits`]; and whether
/// it orders by descending time.
pub fn plan(statement: &str) -> MergePlan {
    let kind = match show_kind(statement) {
        Some(show) if show.is_cardinality() => MergeKind::Sum,
        Some(_) => MergeKind::ShowUnion,
        None => MergeKind::Series,
    };
    let clauses = outer_clauses(statement);
    MergePlan {
        kind,
        limits: clauses.limits(),
        descending: kind == MergeKind::Series && clauses.descending,
    }
}

/// The plans of every statement of `q`, in order (statement `i` of the
/// answers is merged with plan `i`).
pub fn plans(q: &str) -> Vec<MergePlan> {
    influxql::split(q).into_iter().map(plan).collect()
}

/// Merges whole (non-chunked) answers from several clusters to the same
/// query, given as `(node name, body)`; statement `i` is merged as
/// `plans[i]` says (default: [`MergeKind::Series`] without limits). See the
/// module documentation for the rules.
pub fn merge_answers<N, B>(answers: &[(N, B)], plans: &[MergePlan]) -> Result<Vec<u8>, MergeError>
where
    N: AsRef<str>,
    B: AsRef<[u8]>,
{
    if answers.is_empty() {
        return Err(MergeError::NoAnswers);
    }
    let parsed = answers
        .iter()
        .map(|(node, body)| Answer::parse(node.as_ref(), body.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(merge(parsed, plans).to_json())
}

/// [`merge_answers`] on parsed answers.
pub fn merge(answers: Vec<Answer>, plans: &[MergePlan]) -> Answer {
    if let Some(error) = answers.iter().find_map(|a| a.error.clone()) {
        return Answer {
            results: Vec::new(),
            error: Some(error),
        };
    }
    let mut by_statement: BTreeMap<u64, Vec<StatementResult>> = BTreeMap::new();
    for answer in answers {
        for (position, result) in answer.results.into_iter().enumerate() {
            let id = result.statement_id.unwrap_or(position as u64);
            by_statement.entry(id).or_default().push(result);
        }
    }
    let results = by_statement
        .into_iter()
        .map(|(id, parts)| {
            let plan = usize::try_from(id)
                .ok()
                .and_then(|i| plans.get(i))
                .copied()
                .unwrap_or_default();
            merge_statement(id, parts, plan)
        })
        .collect();
    Answer {
        results,
        error: None,
    }
}

/// Merges the results several answers give for statement `id`.
fn merge_statement(id: u64, parts: Vec<StatementResult>, plan: MergePlan) -> StatementResult {
    let partial = parts.iter().any(|p| p.partial);
    let mut messages: Vec<Value> = Vec::new();
    for message in parts.iter().flat_map(|p| &p.messages) {
        if !messages.contains(message) {
            messages.push(message.clone());
        }
    }
    if let Some(error) = parts.iter().find_map(|p| p.error.clone()) {
        return StatementResult {
            statement_id: Some(id),
            series: Vec::new(),
            messages,
            partial,
            error: Some(error),
        };
    }
    let lists: Vec<Vec<Series>> = parts.into_iter().map(|p| p.series).collect();
    let mut series = match plan.kind {
        MergeKind::Series => merge_select(lists, plan.descending),
        MergeKind::ShowUnion => merge_show(lists),
        MergeKind::Sum => merge_sum(lists),
    };
    apply_limits(&mut series, plan.limits);
    StatementResult {
        statement_id: Some(id),
        series,
        messages,
        partial,
        error: None,
    }
}

/// `SLIMIT`/`SOFFSET` on the series, then `LIMIT`/`OFFSET` on the rows of
/// each; a series left without rows by them is dropped, as InfluxDB does
/// not send empty series.
fn apply_limits(series: &mut Vec<Series>, limits: Limits) {
    if let Some(soffset) = limits.soffset {
        series.drain(..soffset.min(series.len()));
    }
    if let Some(slimit) = limits.slimit {
        series.truncate(slimit);
    }
    if limits.offset.is_none() && limits.limit.is_none() {
        return;
    }
    series.retain_mut(|s| {
        if s.values.is_empty() {
            return true;
        }
        if let Some(offset) = limits.offset {
            s.values.drain(..offset.min(s.values.len()));
        }
        if let Some(limit) = limits.limit {
            s.values.truncate(limit);
        }
        !s.values.is_empty()
    });
}

#[cfg(test)]
mod tests;
