//! Remote read: the metric names a `ReadRequest` pins, which decide the
//! clusters that hold its data, and the merge of the `ReadResponse`s of
//! several clusters into the one a single server holding all the data would
//! give.

use std::collections::BTreeMap;

use prost::Message;

use super::messages::{MatchType, QueryResult, ReadResponse, TimeSeries};
use super::snappy;
use super::wire::{expect_len, wrong_type, Reader, Value, WireError};
use super::write::NAME_LABEL;

/// Calls `each` for every query of a `ReadRequest`, in order, with the
/// metric name an equality matcher on `__name__` pins (the first such
/// matcher), or `None` when no matcher pins one (a regex, a negation, no
/// `__name__` matcher at all: then the data may be anywhere). Nothing is
/// allocated, whatever the request holds.
pub fn for_each_query<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(Option<&'a [u8]>),
) -> Result<(), WireError> {
    let mut reader = Reader::new(buf);
    let mut index = 0;
    while let Some((number, value)) = reader.next()? {
        if number != 1 {
            continue;
        }
        let query = expect_len("queries", value)?;
        let name = pinned_name(query).map_err(|e| WireError(format!("query {index}: {e}")))?;
        each(name);
        index += 1;
    }
    Ok(())
}

/// The `__name__` an equality matcher of one `Query` pins.
fn pinned_name(query: &[u8]) -> Result<Option<&[u8]>, WireError> {
    let mut reader = Reader::new(query);
    let mut pinned = None;
    while let Some((number, value)) = reader.next()? {
        match (number, value) {
            (1 | 2, Value::Varint(_)) => {}
            (1, other) => return Err(wrong_type("start_timestamp_ms", &other)),
            (2, other) => return Err(wrong_type("end_timestamp_ms", &other)),
            (3, value) => {
                let (kind, name, value) = matcher(expect_len("matchers", value)?)?;
                if pinned.is_none() && kind == MatchType::Equal as u64 && name == NAME_LABEL {
                    pinned = Some(value);
                }
            }
            _ => {}
        }
    }
    Ok(pinned)
}

/// A `LabelMatcher`: type, name and value.
fn matcher(message: &[u8]) -> Result<(u64, &[u8], &[u8]), WireError> {
    let mut reader = Reader::new(message);
    let (mut kind, mut name, mut value): (u64, &[u8], &[u8]) = (0, b"", b"");
    while let Some((number, field)) = reader.next()? {
        match (number, field) {
            (1, Value::Varint(v)) => kind = v,
            (1, other) => return Err(wrong_type("type", &other)),
            (2, field) => name = expect_len("name", field)?,
            (3, field) => value = expect_len("value", field)?,
            _ => {}
        }
    }
    Ok((kind, name, value))
}

/// Merges snappy-compressed `ReadResponse`s (each at most `limit` bytes
/// decompressed) into one, compressed: result by result, series with the
/// same labels joined into one, their samples in time order (one sample per
/// timestamp: the first part's), series ordered by their labels.
pub fn merge_compressed(parts: &[impl AsRef<[u8]>], limit: u64) -> Result<Vec<u8>, String> {
    let mut responses = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let decoded =
            snappy::decompress(part.as_ref(), limit).map_err(|e| format!("answer {i}: {e}"))?;
        let response = ReadResponse::decode(decoded.as_slice())
            .map_err(|e| format!("answer {i} is not a ReadResponse: {e}"))?;
        responses.push(response);
    }
    Ok(snappy::compress(&merge(responses).encode_to_vec()))
}

/// Merges decoded responses (see [`merge_compressed`]).
pub fn merge(responses: Vec<ReadResponse>) -> ReadResponse {
    let count = responses.iter().map(|r| r.results.len()).max().unwrap_or(0);
    let mut joined: Vec<BTreeMap<_, Vec<_>>> = vec![BTreeMap::new(); count];
    for response in responses {
        for (i, result) in response.results.into_iter().enumerate() {
            for series in result.timeseries {
                joined[i]
                    .entry(series.labels)
                    .or_default()
                    .extend(series.samples);
            }
        }
    }
    let results = joined
        .into_iter()
        .map(|series| QueryResult {
            timeseries: series
                .into_iter()
                .map(|(labels, mut samples)| {
                    samples.sort_by_key(|s| s.timestamp_ms);
                    samples.dedup_by_key(|s| s.timestamp_ms);
                    TimeSeries { labels, samples }
                })
                .collect(),
        })
        .collect();
    ReadResponse { results }
}

#[cfg(test)]
mod tests {
    use super::super::messages::{LabelMatcher, LabelPair, Query, ReadRequest, Sample};
    use super::*;

    fn names(request: &ReadRequest) -> Result<Vec<Option<Vec<u8>>>, WireError> {
        let encoded = request.encode_to_vec();
        let mut out = Vec::new();
        for_each_query(&encoded, |name| out.push(name.map(<[u8]>::to_vec)))?;
        Ok(out)
    }

    fn matcher(kind: MatchType, name: &str, value: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: kind as i32,
            name: name.into(),
            value: value.into(),
        }
    }

    fn query(matchers: Vec<LabelMatcher>) -> Query {
        Query {
            start_timestamp_ms: 1,
            end_timestamp_ms: 2,
            matchers,
        }
    }

    #[test]
    fn only_an_equality_on_the_metric_name_pins_a_query() {
        let request = ReadRequest {
            queries: vec![
                query(vec![
                    matcher(MatchType::Equal, "job", "x"),
                    matcher(MatchType::Equal, "__name__", "up"),
                    matcher(MatchType::Equal, "__name__", "other"),
                ]),
                query(vec![matcher(MatchType::RegexMatch, "__name__", "up")]),
                query(vec![matcher(MatchType::NotEqual, "__name__", "up")]),
                query(vec![matcher(MatchType::Equal, "job", "x")]),
                query(vec![]),
            ],
        };
        assert_eq!(
            names(&request).unwrap(),
            vec![Some(b"up".to_vec()), None, None, None, None]
        );
    }

    #[test]
    fn a_damaged_read_request_says_where() {
        let mut encoded = ReadRequest {
            queries: vec![
                query(vec![]),
                query(vec![matcher(MatchType::Equal, "a", "b")]),
            ],
        }
        .encode_to_vec();
        encoded.truncate(encoded.len() - 1);
        let e = for_each_query(&encoded, |_| {}).unwrap_err();
        assert!(e.0.starts_with("a field declares"), "{e}");
        // a matcher whose type is a string
        let bad = [0x0a, 0x04, 0x1a, 0x02, 0x0a, 0x00];
        let e = for_each_query(&bad, |_| {}).unwrap_err();
        assert!(e.0.starts_with("query 0: field type"), "{e}");
    }

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| LabelPair::new(*n, *v)).collect(),
            samples: samples
                .iter()
                .map(|(t, v)| Sample {
                    value: *v,
                    timestamp_ms: *t,
                })
                .collect(),
        }
    }

    fn response(results: Vec<Vec<TimeSeries>>) -> ReadResponse {
        ReadResponse {
            results: results
                .into_iter()
                .map(|timeseries| QueryResult { timeseries })
                .collect(),
        }
    }

    #[test]
    fn series_of_the_same_labels_are_joined_in_time_order() {
        let up_a = [("__name__", "up"), ("job", "a")];
        let first = response(vec![vec![
            series(&up_a, &[(10, 1.0), (30, 3.0)]),
            series(&[("__name__", "zz")], &[(5, 5.0)]),
        ]]);
        let second = response(vec![vec![
            series(&[("__name__", "cpu")], &[(1, 9.0)]),
            series(&up_a, &[(20, 2.0), (30, 99.0)]),
        ]]);
        let merged = merge(vec![first, second]);
        assert_eq!(
            merged,
            response(vec![vec![
                series(&[("__name__", "cpu")], &[(1, 9.0)]),
                series(&up_a, &[(10, 1.0), (20, 2.0), (30, 3.0)]),
                series(&[("__name__", "zz")], &[(5, 5.0)]),
            ]])
        );
    }

    #[test]
    fn compressed_answers_merge_and_bad_ones_are_named() {
        let one = response(vec![vec![series(&[("__name__", "a")], &[(1, 1.0)])]]);
        let two = response(vec![vec![series(&[("__name__", "b")], &[(2, 2.0)])]]);
        let parts = [
            snappy::compress(&one.encode_to_vec()),
            snappy::compress(&two.encode_to_vec()),
        ];
        let merged = merge_compressed(&parts, 1 << 20).unwrap();
        let decoded =
            ReadResponse::decode(snappy::decompress(&merged, 1 << 20).unwrap().as_slice()).unwrap();
        assert_eq!(decoded.results[0].timeseries.len(), 2);
        let e = merge_compressed(&[parts[0].clone(), b"junk".to_vec()], 1 << 20).unwrap_err();
        assert!(e.starts_with("answer 1: "), "{e}");
    }
}
