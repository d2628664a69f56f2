//! Checking a decompressed `WriteRequest`, and splitting it by measurement.
//!
//! The nodes convert remote writes themselves (their own
//! `/api/v1/prom/write`), so what they store is by construction what
//! InfluxDB stores; the router only has to check a request before it
//! answers for it (it may sit in a queue) and, when routing rules put a
//! database's measurements on several clusters, cut it into one
//! `WriteRequest` per cluster made of the client's own `TimeSeries` bytes.
//!
//! [`scan`] walks the message with [`super::wire`], never building it in
//! memory, and applies InfluxDB 1.x's rules for the request as a whole
//! (`prometheus.WriteRequestToPoints` and `models.NewPoint`, confirmed
//! against influxd 1.6.7): the measurement of a series is the value of its
//! last `__name__` label, `prom_metric_not_specified` without one; a NaN
//! sample is dropped; the first sample, in order, whose timestamp in
//! nanoseconds (milliseconds times 10^6, wrapping as Go's int64 does) is
//! out of range, whose value is ±Inf, or whose series key is longer than
//! 65535 bytes makes InfluxDB refuse the whole request with 400 and that
//! message: [`WriteError::Refused`] says the same.

use std::collections::BTreeMap;

use super::wire::{expect_len, wrong_type, Reader, Value, WireError};

/// The measurement of a series without a `__name__` label.
pub const UNNAMED_MEASUREMENT: &[u8] = b"prom_metric_not_specified";

/// The label whose value is the metric name.
pub const NAME_LABEL: &[u8] = b"__name__";

/// InfluxDB's longest series key (`models.MaxKeyLength`).
const MAX_KEY_LENGTH: usize = 65535;

/// What InfluxDB adds to a series key for its one field, `value`
/// (`#!~#value`), when it checks the key's length.
const FIELD_SUFFIX_LEN: usize = "#!~#".len() + "value".len();

/// `models.MinNanoTime` and `models.MaxNanoTime`.
const MIN_NANO_TIME: i64 = i64::MIN + 2;
const MAX_NANO_TIME: i64 = i64::MAX - 1;

/// Why a request cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Not a valid `WriteRequest` message.
    Protobuf(String),
    /// A valid message that InfluxDB refuses whole, with InfluxDB's words.
    Refused(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Protobuf(why) => {
                write!(f, "the body is not a valid Prometheus WriteRequest: {why}")
            }
            WriteError::Refused(why) => f.write_str(why),
        }
    }
}

/// What a checked request holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub series: u64,
    pub samples: u64,
}

/// Checks a whole `WriteRequest` and hands each series to `each`, in order:
/// its measurement, and the bytes of its `timeseries` field (key, length
/// and message) as they are in `buf`.
pub fn scan<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(&[u8], &'a [u8]),
) -> Result<Counts, WriteError> {
    let mut reader = Reader::new(buf);
    let mut counts = Counts::default();
    let mut refused: Option<String> = None;
    loop {
        let start = reader.position();
        let field = reader.next().map_err(|e| at_series(counts.series, e))?;
        let Some((number, value)) = field else { break };
        if number != 1 {
            continue; // metadata (3) and other fields InfluxDB does not read
        }
        let message = expect_len("timeseries", value).map_err(|e| at_series(counts.series, e))?;
        let series = Series::read(message).map_err(|e| at_series(counts.series, e))?;
        if refused.is_none() {
            refused = series.refusal(message);
        }
        counts.series += 1;
        counts.samples += series.samples;
        each(series.measurement, &buf[start..reader.position()]);
    }
    match refused {
        Some(why) => Err(WriteError::Refused(why)),
        None => Ok(counts),
    }
}

fn at_series(index: u64, e: WireError) -> WriteError {
    WriteError::Protobuf(format!("timeseries {index}: {e}"))
}

/// Splits a `WriteRequest` (after [`scan`] would accept it) into one
/// request per key (a cluster, or where a measurement's writes go) that
/// `cluster_of` gives a measurement: each made of the series of that key,
/// byte for byte, in their order. Fields other than `timeseries`
/// (metadata, which InfluxDB ignores) are left out. Keys come in the order
/// their first series came.
pub fn split<K: Copy + Eq>(
    buf: &[u8],
    mut cluster_of: impl FnMut(&[u8]) -> K,
) -> Result<Vec<(K, Vec<u8>)>, WriteError> {
    let mut batches: Vec<(K, Vec<u8>)> = Vec::new();
    let mut last: Option<(Vec<u8>, K)> = None;
    scan(buf, |measurement, field| {
        let cluster = match &last {
            Some((name, cluster)) if name == measurement => *cluster,
            _ => {
                let cluster = cluster_of(measurement);
                last = Some((measurement.to_vec(), cluster));
                cluster
            }
        };
        match batches.iter_mut().find(|(c, _)| *c == cluster) {
            Some((_, batch)) => batch.extend_from_slice(field),
            None => batches.push((cluster, field.to_vec())),
        }
    })?;
    Ok(batches)
}

/// What the router needs of one `TimeSeries`, checked.
struct Series<'a> {
    measurement: &'a [u8],
    samples: u64,
    /// An upper bound of the series key's length, for skipping the exact
    /// count on every ordinary series.
    key_bound: usize,
}

impl<'a> Series<'a> {
    fn read(message: &'a [u8]) -> Result<Series<'a>, WireError> {
        let mut reader = Reader::new(message);
        let mut series = Series {
            measurement: UNNAMED_MEASUREMENT,
            samples: 0,
            key_bound: FIELD_SUFFIX_LEN,
        };
        let mut labels = 0;
        while let Some((number, value)) = reader.next()? {
            match number {
                1 => {
                    let (name, value) = label(expect_len("labels", value)?)
                        .map_err(|e| WireError(format!("label {labels}: {e}")))?;
                    if name == NAME_LABEL {
                        series.measurement = value;
                    }
                    // ",key=value", every byte escaped at worst
                    series.key_bound += 2 + 2 * (name.len() + value.len());
                    labels += 1;
                }
                2 => {
                    sample(expect_len("samples", value)?)
                        .map_err(|e| WireError(format!("sample {}: {e}", series.samples)))?;
                    series.samples += 1;
                }
                _ => {}
            }
        }
        series.key_bound += 2 * series.measurement.len();
        Ok(series)
    }

    /// InfluxDB's reason to refuse the whole request because of this
    /// series's first sample that it cannot store, if any (the message is
    /// known to be well formed).
    fn refusal(&self, message: &[u8]) -> Option<String> {
        if self.samples == 0 {
            return None;
        }
        let mut key_len: Option<usize> = None;
        let mut reader = Reader::new(message);
        while let Ok(Some((number, value))) = reader.next() {
            let (2, Value::Len(bytes)) = (number, value) else {
                continue;
            };
            let Ok((value, timestamp_ms)) = sample(bytes) else {
                continue;
            };
            if value.is_nan() {
                continue; // dropped, not refused
            }
            let nanos = timestamp_ms.wrapping_mul(1_000_000);
            if !(MIN_NANO_TIME..=MAX_NANO_TIME).contains(&nanos) {
                return Some(format!(
                    "time outside range {MIN_NANO_TIME} - {MAX_NANO_TIME}"
                ));
            }
            if value.is_infinite() {
                return Some("+/-Inf is an unsupported value for field value".into());
            }
            if self.key_bound > MAX_KEY_LENGTH {
                let len = *key_len.get_or_insert_with(|| series_key_len(message));
                if len > MAX_KEY_LENGTH {
                    return Some(format!("max key length exceeded: {len} > {MAX_KEY_LENGTH}"));
                }
            }
        }
        None
    }
}

/// A `LabelPair`: name and value (the last of each when repeated, as a
/// protobuf decoder keeps them).
fn label(message: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let mut reader = Reader::new(message);
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    while let Some((number, field)) = reader.next()? {
        match number {
            1 => name = expect_len("name", field)?,
            2 => value = expect_len("value", field)?,
            _ => {}
        }
    }
    Ok((name, value))
}

/// A `Sample`: value and timestamp in milliseconds.
fn sample(message: &[u8]) -> Result<(f64, i64), WireError> {
    let mut reader = Reader::new(message);
    let (mut value, mut timestamp) = (0.0, 0);
    while let Some((number, field)) = reader.next()? {
        match (number, field) {
            (1, Value::Fixed64(bits)) => value = f64::from_le_bytes(bits),
            (2, Value::Varint(v)) => timestamp = v as i64,
            (1, other) => return Err(wrong_type("value", &other)),
            (2, other) => return Err(wrong_type("timestamp", &other)),
            _ => {}
        }
    }
    Ok((value, timestamp))
}

/// The length InfluxDB gives the series key of a well-formed `TimeSeries`
/// when it checks it against [`MAX_KEY_LENGTH`]: the measurement
/// unescaped and escaped again, then `,key=value` for every label with a
/// value (the last of a repeated name, in any order: only the length
/// counts), tags escaped, and the field suffix.
fn series_key_len(message: &[u8]) -> usize {
    let mut tags: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
    let mut reader = Reader::new(message);
    while let Ok(Some((number, value))) = reader.next() {
        if let (1, Value::Len(bytes)) = (number, value) {
            if let Ok((name, value)) = label(bytes) {
                tags.insert(name, value);
            }
        }
    }
    let measurement = tags.get(NAME_LABEL).copied().unwrap_or(UNNAMED_MEASUREMENT);
    let mut len = escaped_measurement_len(measurement) + FIELD_SUFFIX_LEN;
    for (name, value) in tags.iter().filter(|(_, v)| !v.is_empty()) {
        len += 2 + escaped_tag_len(name) + escaped_tag_len(value);
    }
    len
}

/// `len(EscapeMeasurement(unescapeMeasurement(name)))`: `\,` then `\ `
/// become `,` and ` `, and every `,` and ` ` is escaped again.
fn escaped_measurement_len(name: &[u8]) -> usize {
    let unescaped = replace(&replace(name, b"\\,", b','), b"\\ ", b' ');
    unescaped.len() + memchr::memchr2_iter(b',', b' ', &unescaped).count()
}

/// `bytes.Replace(input, pattern, with, -1)` for a two-byte pattern and a
/// one-byte replacement.
fn replace(input: &[u8], pattern: &[u8; 2], with: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(pattern) {
            out.push(with);
            i += 2;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

/// The length of a tag key or value with `,`, ` ` and `=` escaped.
fn escaped_tag_len(bytes: &[u8]) -> usize {
    bytes.len() + memchr::memchr3_iter(b',', b' ', b'=', bytes).count()
}

#[cfg(test)]
mod tests;
