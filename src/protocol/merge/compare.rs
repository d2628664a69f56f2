//! The orders merged rows and series are sorted by: a total order on JSON
//! values ([`compare_values`], [`compare_rows`]) and `time` cells compared
//! by the instant they name ([`compare_times`]), RFC 3339 strings read to
//! nanoseconds without a date library ([`rfc3339_nanos`]).

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// Rows compared cell by cell, a shorter row first on a tie.
pub(super) fn compare_rows(a: &[Value], b: &[Value]) -> Ordering {
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
pub(super) fn compare_values(a: &Value, b: &Value) -> Ordering {
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
pub(super) fn compare_times(a: Option<&Value>, b: Option<&Value>) -> Ordering {
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
pub(super) fn rfc3339_nanos(s: &str) -> Option<i128> {
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
