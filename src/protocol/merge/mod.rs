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

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Number, Value};

use super::influxql::{self, sources::show_kind, Lexer, Token, TokenKind};

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

/// The `LIMIT`, `OFFSET`, `SLIMIT` and `SOFFSET` of `statement`'s outermost
/// query (those of subqueries are the nodes' business). Only the first
/// statement is read when there are several.
pub fn limits(statement: &str) -> Limits {
    outer_clauses(statement).limits()
}

/// `statement` as each cluster must run it when the answers are merged:
/// `LIMIT n OFFSET m` becomes `LIMIT n+m`, a lone `OFFSET m` is removed,
/// and the same for `SLIMIT`/`SOFFSET`, in the outermost query only (see the
/// module documentation). `None` when there is nothing to change (no
/// `OFFSET`/`SOFFSET`, or zero ones). Only the first statement is rewritten
/// when there are several; the rest of the text is kept as it is.
pub fn rewrite_for_fanout(statement: &str) -> Option<String> {
    let clauses = outer_clauses(statement);
    // (start, end, replacement) edits of the text, in any order.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (limit, offset) in [
        (clauses.limit, clauses.offset),
        (clauses.slimit, clauses.soffset),
    ] {
        let Some(offset) = offset.filter(|o| o.value > 0) else {
            continue;
        };
        if let Some(limit) = limit.filter(|l| l.value > 0) {
            let sum = limit
                .value
                .saturating_add(offset.value)
                .min(i64::MAX as u64);
            edits.push((limit.number_start, limit.number_end, sum.to_string()));
        }
        // Remove the clause with the space (and comments) before it.
        edits.push((offset.preceding_end, offset.number_end, String::new()));
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|edit| std::cmp::Reverse(edit.0));
    let mut text = statement.to_string();
    for (start, end, replacement) in edits {
        text.replace_range(start..end, &replacement);
    }
    Some(text)
}

/// A `LIMIT n`-like clause found in a statement.
#[derive(Debug, Clone, Copy)]
struct Clause {
    /// The number's value.
    value: u64,
    /// Where the number starts.
    number_start: usize,
    /// Where the number ends.
    number_end: usize,
    /// Where the token before the keyword ends.
    preceding_end: usize,
}

/// The clauses of a statement's outermost query that matter to a merge.
#[derive(Debug, Default, Clone)]
struct OuterClauses {
    limit: Option<Clause>,
    offset: Option<Clause>,
    slimit: Option<Clause>,
    soffset: Option<Clause>,
    descending: bool,
}

impl OuterClauses {
    fn limits(&self) -> Limits {
        let get = |clause: Option<Clause>| {
            clause
                .filter(|c| c.value > 0)
                .map(|c| usize::try_from(c.value).unwrap_or(usize::MAX))
        };
        Limits {
            limit: get(self.limit),
            offset: get(self.offset),
            slimit: get(self.slimit),
            soffset: get(self.soffset),
        }
    }
}

/// Reads the depth-0 `LIMIT`/`OFFSET`/`SLIMIT`/`SOFFSET <integer>` clauses
/// and `ORDER BY … DESC` of the first statement of `statement`.
fn outer_clauses(statement: &str) -> OuterClauses {
    let tokens: Vec<Token<'_>> = Lexer::new(statement)
        .skip_while(|t| t.kind == TokenKind::Semicolon)
        .take_while(|t| t.kind != TokenKind::Semicolon)
        .collect();
    let mut out = OuterClauses::default();
    let mut depth = 0usize;
    let mut in_order_by = false;
    for (i, token) in tokens.iter().enumerate() {
        if token.kind == TokenKind::Punct {
            match token.text {
                "(" => depth += 1,
                ")" => depth = depth.saturating_sub(1),
                _ => {}
            }
            continue;
        }
        if depth > 0 || token.kind != TokenKind::Word {
            continue;
        }
        if token.is_keyword("ORDER") && tokens.get(i + 1).is_some_and(|t| t.is_keyword("BY")) {
            in_order_by = true;
            continue;
        }
        if in_order_by && token.is_keyword("DESC") {
            out.descending = true;
            continue;
        }
        let slot = if token.is_keyword("LIMIT") {
            &mut out.limit
        } else if token.is_keyword("OFFSET") {
            &mut out.offset
        } else if token.is_keyword("SLIMIT") {
            &mut out.slimit
        } else if token.is_keyword("SOFFSET") {
            &mut out.soffset
        } else {
            continue;
        };
        in_order_by = false;
        let Some(number) = tokens.get(i + 1).filter(|t| t.kind == TokenKind::Number) else {
            continue;
        };
        // Durations (`FUTURE LIMIT 1h`) and fractions are not row counts.
        let Ok(value) = number.text.parse::<u64>() else {
            continue;
        };
        if slot.is_none() {
            *slot = Some(Clause {
                value,
                number_start: number.start,
                number_end: number.end(),
                preceding_end: if i == 0 { 0 } else { tokens[i - 1].end() },
            });
        }
    }
    out
}

// --- the answer model --------------------------------------------------------

/// An InfluxDB 1.x `/query` answer (one JSON document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// One result per statement.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub results: Vec<StatementResult>,
    /// A request-level error (`{"error":"error parsing query: …"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result of one statement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatementResult {
    /// The statement's index in the query. `None` when the node did not send
    /// one (InfluxDB before 1.2): the result's position is used instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_id: Option<u64>,
    /// The series, in order.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub series: Vec<Series>,
    /// Informational messages (`{"level":"warning","text":"…"}`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub messages: Vec<Value>,
    /// Whether the result was cut short (row limits, chunking).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub partial: bool,
    /// The statement's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One series of a result (InfluxDB's `models.Row`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The measurement (or `measurements`, `databases`… for `SHOW`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// The `GROUP BY` tags, sorted by key.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tags: BTreeMap<String, String>,
    /// The column names.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub columns: Vec<String>,
    /// The rows.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub values: Vec<Vec<Value>>,
    /// Whether more of this series follows (chunked answers).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub partial: bool,
}

fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Answer {
    /// Parses the body `node` answered.
    pub fn parse(node: &str, body: &[u8]) -> Result<Answer, MergeError> {
        serde_json::from_slice(body).map_err(|e| {
            let node = node.to_string();
            let message = e.to_string();
            if e.is_data() {
                MergeError::NotAnAnswer { node, message }
            } else {
                MergeError::NotJson { node, message }
            }
        })
    }

    /// The answer as InfluxDB writes it: compact JSON and a newline.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings, numbers and maps with string keys cannot fail.
        let mut out = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        out.push(b'\n');
        out
    }
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

// --- merging series ------------------------------------------------------------

/// A series' identity: measurement name and tags.
type SeriesKey = (String, BTreeMap<String, String>);

fn key_of(series: &Series) -> SeriesKey {
    (series.name.clone(), series.tags.clone())
}

/// InfluxDB's series order: by name, then by the tag set's ID (keys joined
/// with NUL, a NUL, then values joined with NUL, keys sorted).
fn series_order(a: &Series, b: &Series) -> Ordering {
    a.name
        .as_bytes()
        .cmp(b.name.as_bytes())
        .then_with(|| tags_id(&a.tags).cmp(&tags_id(&b.tags)))
}

fn tags_id(tags: &BTreeMap<String, String>) -> Vec<u8> {
    let mut id = Vec::new();
    for (i, key) in tags.keys().enumerate() {
        if i > 0 {
            id.push(0);
        }
        id.extend_from_slice(key.as_bytes());
    }
    if !tags.is_empty() {
        id.push(0);
    }
    for (i, value) in tags.values().enumerate() {
        if i > 0 {
            id.push(0);
        }
        id.extend_from_slice(value.as_bytes());
    }
    id
}

/// Merges lists each sorted by `order` into one sorted list; stable (on
/// ties, earlier lists first) and keeping each list's own order even where
/// it disagrees with `order`.
fn merge_sorted<T>(lists: Vec<Vec<T>>, order: impl Fn(&T, &T) -> Ordering) -> Vec<T> {
    let mut lists = lists.into_iter();
    let first = lists.next().unwrap_or_default();
    lists.fold(first, |left, right| merge_two(left, right, &order))
}

fn merge_two<T>(left: Vec<T>, right: Vec<T>, order: &impl Fn(&T, &T) -> Ordering) -> Vec<T> {
    if left.is_empty() {
        return right;
    }
    if right.is_empty() {
        return left;
    }
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => order(l, r) != Ordering::Greater,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// [`MergeKind::Series`].
fn merge_select(lists: Vec<Vec<Series>>, descending: bool) -> Vec<Series> {
    let order = |a: &Series, b: &Series| {
        let o = series_order(a, b);
        if descending {
            o.reverse()
        } else {
            o
        }
    };
    let mut out: Vec<Series> = Vec::new();
    let mut index: HashMap<SeriesKey, usize> = HashMap::new();
    for series in merge_sorted(lists, order) {
        match index.get(&key_of(&series)) {
            Some(&i) => absorb(&mut out[i], series, descending),
            None => {
                index.insert(key_of(&series), out.len());
                out.push(series);
            }
        }
    }
    out
}

/// Adds `other`'s rows to `into` (same name and tags), merged by time.
fn absorb(into: &mut Series, other: Series, descending: bool) {
    into.partial |= other.partial;
    let other_values = align_columns(into, other);
    let values = std::mem::take(&mut into.values);
    into.values = match time_column(&into.columns) {
        Some(t) => merge_two(values, other_values, &|a: &Vec<Value>, b: &Vec<Value>| {
            let o = compare_times(a.get(t), b.get(t));
            if descending {
                o.reverse()
            } else {
                o
            }
        }),
        None => {
            let mut values = values;
            values.extend(other_values);
            values
        }
    };
}

/// The index of the time column: the first column, when named `time`.
fn time_column(columns: &[String]) -> Option<usize> {
    (columns.first()? == "time").then_some(0)
}

/// Makes `into` and `other` share columns and returns `other`'s rows laid
/// out as `into`'s. Columns missing from one side are added (after the
/// others, or in sorted place when both sides list them sorted after
/// `time`, as `SELECT *` does), with `null` values. Sides with duplicate
/// column names are concatenated as they are.
fn align_columns(into: &mut Series, other: Series) -> Vec<Vec<Value>> {
    if into.columns == other.columns
        || has_duplicates(&into.columns)
        || has_duplicates(&other.columns)
    {
        return other.values;
    }
    let mut union = into.columns.clone();
    for column in &other.columns {
        if !union.contains(column) {
            union.push(column.clone());
        }
    }
    let sorted_tail = |columns: &[String]| {
        let skip = usize::from(time_column(columns).is_some());
        columns[skip..].windows(2).all(|w| w[0] <= w[1])
    };
    if sorted_tail(&into.columns) && sorted_tail(&other.columns) {
        let skip = usize::from(time_column(&union).is_some());
        union[skip..].sort();
    }
    let old = std::mem::replace(&mut into.columns, union);
    into.values = remap(std::mem::take(&mut into.values), &old, &into.columns);
    remap(other.values, &other.columns, &into.columns)
}

fn has_duplicates(columns: &[String]) -> bool {
    columns
        .iter()
        .enumerate()
        .any(|(i, c)| columns[..i].contains(c))
}

/// Lays `rows` (with columns `from`) out as columns `to` (a superset).
fn remap(rows: Vec<Vec<Value>>, from: &[String], to: &[String]) -> Vec<Vec<Value>> {
    let positions: Vec<Option<usize>> = to
        .iter()
        .map(|c| from.iter().position(|f| f == c))
        .collect();
    rows.into_iter()
        .map(|mut row| {
            positions
                .iter()
                .map(|p| {
                    p.and_then(|p| row.get_mut(p))
                        .map(Value::take)
                        .unwrap_or(Value::Null)
                })
                .collect()
        })
        .collect()
}

/// Groups series with the same name and tags (first-seen order), their
/// columns aligned; returns each group's series with all rows appended, and
/// the row lists of each answer separately.
fn group(lists: Vec<Vec<Series>>) -> Vec<(Series, Vec<Vec<Vec<Value>>>)> {
    let mut out: Vec<(Series, Vec<Vec<Vec<Value>>>)> = Vec::new();
    let mut index: HashMap<SeriesKey, usize> = HashMap::new();
    for mut series in lists.into_iter().flatten() {
        match index.get(&key_of(&series)) {
            Some(&i) => {
                let (into, parts) = &mut out[i];
                into.partial |= series.partial;
                let old_columns = into.columns.clone();
                let rows = align_columns(into, series);
                if into.columns != old_columns {
                    for part in parts.iter_mut() {
                        *part = remap(std::mem::take(part), &old_columns, &into.columns);
                    }
                }
                parts.push(rows);
            }
            None => {
                index.insert(key_of(&series), out.len());
                let rows = std::mem::take(&mut series.values);
                out.push((series, vec![rows]));
            }
        }
    }
    out
}

/// [`MergeKind::ShowUnion`].
fn merge_show(lists: Vec<Vec<Series>>) -> Vec<Series> {
    let mut out: Vec<Series> = group(lists)
        .into_iter()
        .map(|(mut series, parts)| {
            let mut rows: Vec<Vec<Value>> = parts.into_iter().flatten().collect();
            rows.sort_by(|a, b| compare_rows(a, b));
            rows.dedup();
            series.values = rows;
            series
        })
        .collect();
    out.sort_by(series_order);
    out
}

/// [`MergeKind::Sum`].
fn merge_sum(lists: Vec<Vec<Series>>) -> Vec<Series> {
    let mut out: Vec<Series> = group(lists)
        .into_iter()
        .map(|(mut series, parts)| {
            let mut parts = parts.into_iter();
            let mut rows = parts.next().unwrap_or_default();
            for part in parts {
                for (i, row) in part.into_iter().enumerate() {
                    match rows.get_mut(i) {
                        Some(into) => add_row(into, row),
                        None => rows.push(row),
                    }
                }
            }
            series.values = rows;
            series
        })
        .collect();
    out.sort_by(series_order);
    out
}

/// Adds `row` to `into` cell by cell: numbers are added, a `null` takes the
/// other side's value, anything else keeps `into`'s.
fn add_row(into: &mut Vec<Value>, row: Vec<Value>) {
    for (i, value) in row.into_iter().enumerate() {
        match into.get_mut(i) {
            Some(cell) => {
                let sum = match (&*cell, &value) {
                    (Value::Number(a), Value::Number(b)) => add_numbers(a, b).map(Value::Number),
                    (Value::Null, _) => Some(value),
                    _ => None,
                };
                if let Some(sum) = sum {
                    *cell = sum;
                }
            }
            None => into.push(value),
        }
    }
}

fn add_numbers(a: &Number, b: &Number) -> Option<Number> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        if let Some(sum) = x.checked_add(y) {
            return Some(sum.into());
        }
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        if let Some(sum) = x.checked_add(y) {
            return Some(sum.into());
        }
    }
    Number::from_f64(a.as_f64()? + b.as_f64()?)
}

// --- comparing values ------------------------------------------------------------

/// Rows compared cell by cell, a shorter row first on a tie.
fn compare_rows(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = compare_values(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// A total order on JSON values: `null` < booleans < numbers (numerically)
/// < strings (bytewise) < arrays (element-wise) < objects (all equal).
fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Array(x), Value::Array(y)) => compare_rows(x, y),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    let integer = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

/// Compares two `time` cells: epoch numbers numerically, RFC 3339 strings by
/// the instant they name (so `…:00Z` comes before `…:00.5Z`, and offsets
/// from `tz()` are honoured), anything else as [`compare_values`] does.
fn compare_times(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let (a, b) = (a.unwrap_or(&Value::Null), b.unwrap_or(&Value::Null));
    if let (Value::String(x), Value::String(y)) = (a, b) {
        if let (Some(x), Some(y)) = (rfc3339_nanos(x), rfc3339_nanos(y)) {
            return x.cmp(&y);
        }
    }
    compare_values(a, b)
}

/// Nanoseconds since the Unix epoch of an RFC 3339 time
/// (`2006-01-02T15:04:05[.999999999](Z|±07:00)`), or `None`.
fn rfc3339_nanos(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if at(i, b".") {
        i += 1;
        let start = i;
        while at(i, b"0123456789") {
            i += 1;
        }
        if i == start {
            return None;
        }
        for k in 0..9 {
            let digit = if start + k < i {
                b[start + k] - b'0'
            } else {
                0
            };
            nanos = nanos * 10 + i128::from(digit);
        }
    }
    let offset_seconds = if at(i, b"Zz") && b.len() == i + 1 {
        0
    } else if at(i, b"+-") && at(i + 3, b":") && b.len() == i + 6 {
        let sign = if b[i] == b'-' { -1 } else { 1 };
        sign * (digits(i + 1, 2)? * 3600 + digits(i + 4, 2)? * 60)
    } else {
        return None;
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(i128::from(seconds) * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
