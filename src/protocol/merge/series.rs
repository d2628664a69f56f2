//! Merges the series lists of one statement's answers: concatenated in
//! InfluxDB's series order with rows merged by time for `SELECT`
//! ([`merge_select`]), unioned, deduplicated and sorted for `SHOW`
//! ([`merge_show`]), added up for `SHOW … CARDINALITY` ([`merge_sum`]).
//! Series with the same name and tags become one, their columns aligned.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use serde_json::{Number, Value};

use super::answer::Series;
use super::compare::{compare_rows, compare_times};

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

/// [`MergeKind::Series`](super::MergeKind::Series).
pub(super) fn merge_select(lists: Vec<Vec<Series>>, descending: bool) -> Vec<Series> {
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

/// [`MergeKind::ShowUnion`](super::MergeKind::ShowUnion).
pub(super) fn merge_show(lists: Vec<Vec<Series>>) -> Vec<Series> {
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

/// [`MergeKind::Sum`](super::MergeKind::Sum).
pub(super) fn merge_sum(lists: Vec<Vec<Series>>) -> Vec<Series> {
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
