//! Reading InfluxDB query answers: the whole JSON answer of a small
//! statement ([`statement_series`]), and the rows of a chunked MessagePack
//! answer, one chunk at a time ([`read_chunk`]), handed to a [`Rows`] sink
//! without building the answer in memory.

use serde::Deserialize;

use super::msgpack::{Cursor, Malformed, Scalar};

/// One series of a chunk: the measurement, its tags sorted by key (empty
/// values left out: InfluxDB reports a tag a series lacks as `""` under
/// `GROUP BY *`), and the columns, `time` first.
#[derive(Debug, Default)]
pub struct SeriesHead<'a> {
    pub name: &'a [u8],
    pub tags: Vec<(&'a [u8], &'a [u8])>,
    pub columns: Vec<&'a [u8]>,
    /// Different for every series read (in this process), so a sink may
    /// keep what it derived from one series for all of its rows.
    pub serial: u64,
}

/// Hands out [`SeriesHead::serial`]s.
static SERIALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Takes the rows of an answer as they are read.
pub trait Rows {
    /// One row of `series`: `values[0]` is the time, the rest follow `series.columns`.
    fn row(&mut self, series: &SeriesHead<'_>, values: &[Scalar<'_>]) -> Result<(), String>;
}

/// Why an answer could not be read.
#[derive(Debug)]
pub enum AnswerError {
    /// InfluxDB answered with an error for the statement.
    Influx(String),
    /// The bytes are not an answer.
    Malformed(String),
    /// The sink refused a row.
    Sink(String),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::Influx(e) => write!(f, "InfluxDB error: {e}"),
            AnswerError::Malformed(e) => write!(f, "{e}"),
            AnswerError::Sink(e) => write!(f, "{e}"),
        }
    }
}

impl From<Malformed> for AnswerError {
    fn from(e: Malformed) -> Self {
        AnswerError::Malformed(e.to_string())
    }
}

/// Reads one whole chunk (a top-level map) and hands its rows to `rows`.
pub fn read_chunk(chunk: &[u8], rows: &mut dyn Rows) -> Result<(), AnswerError> {
    let mut c = Cursor::new(chunk);
    for _ in 0..c.map_len()? {
        match c.str()? {
            b"results" => {
                for _ in 0..c.array_len()? {
                    read_result(&mut c, rows)?;
                }
            }
            b"error" => return Err(AnswerError::Influx(text(c.str()?))),
            _ => c.skip()?,
        }
    }
    Ok(())
}

fn read_result(c: &mut Cursor<'_>, rows: &mut dyn Rows) -> Result<(), AnswerError> {
    for _ in 0..c.map_len()? {
        match c.str()? {
            b"series" => {
                for _ in 0..c.array_len()? {
                    read_series(c, rows)?;
                }
            }
            b"error" => return Err(AnswerError::Influx(text(c.str()?))),
            _ => c.skip()?,
        }
    }
    Ok(())
}

fn read_series<'a>(c: &mut Cursor<'a>, rows: &mut dyn Rows) -> Result<(), AnswerError> {
    let mut head = SeriesHead {
        serial: SERIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        ..SeriesHead::default()
    };
    let mut values: Vec<Scalar<'a>> = Vec::new();
    for _ in 0..c.map_len()? {
        match c.str()? {
            b"name" => head.name = c.str()?,
            b"tags" => {
                for _ in 0..c.map_len()? {
                    let key = c.str()?;
                    let value = c.str()?;
                    if !value.is_empty() {
                        head.tags.push((key, value));
                    }
                }
                head.tags.sort_unstable();
            }
            b"columns" => {
                for _ in 0..c.array_len()? {
                    head.columns.push(c.str()?);
                }
            }
            b"values" => {
                if head.columns.is_empty() {
                    return Err(AnswerError::Malformed(
                        "series values come before its columns".into(),
                    ));
                }
                for _ in 0..c.array_len()? {
                    let n = c.array_len()?;
                    if n != head.columns.len() {
                        return Err(AnswerError::Malformed(format!(
                            "a row has {n} values for {} columns",
                            head.columns.len()
                        )));
                    }
                    values.clear();
                    for _ in 0..n {
                        values.push(c.scalar()?);
                    }
                    rows.row(&head, &values).map_err(AnswerError::Sink)?;
                }
            }
            _ => c.skip()?,
        }
    }
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A JSON answer: `{"results":[{"series":[...],"error":...}], "error":...}`.
#[derive(Debug, Deserialize)]
struct JsonAnswer {
    #[serde(default)]
    results: Vec<JsonResult>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JsonResult {
    #[serde(default)]
    series: Vec<JsonSeries>,
    error: Option<String>,
}

/// One series of a JSON answer.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct JsonSeries {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<Vec<serde_json::Value>>,
}

impl JsonSeries {
    /// The index of column `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Each row's value of column `name` (`Null` where the column is missing).
    pub fn get<'s>(&'s self, row: &'s [serde_json::Value], name: &str) -> &'s serde_json::Value {
        self.column(name)
            .and_then(|i| row.get(i))
            .unwrap_or(&serde_json::Value::Null)
    }
}

/// The series of each statement of a JSON answer; the first error (of the
/// answer or of a statement) is `Err`.
pub fn statement_series(body: &[u8]) -> Result<Vec<Vec<JsonSeries>>, AnswerError> {
    let answer: JsonAnswer = serde_json::from_slice(body)
        .map_err(|e| AnswerError::Malformed(format!("answer is not InfluxDB's JSON: {e}")))?;
    if let Some(e) = answer.error {
        return Err(AnswerError::Influx(e));
    }
    let mut out = Vec::with_capacity(answer.results.len());
    for result in answer.results {
        if let Some(e) = result.error {
            return Err(AnswerError::Influx(e));
        }
        out.push(result.series);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<String>);

    impl Rows for Collect {
        fn row(&mut self, s: &SeriesHead<'_>, values: &[Scalar<'_>]) -> Result<(), String> {
            let tags: Vec<String> = s
                .tags
                .iter()
                .map(|(k, v)| format!("{}={}", text(k), text(v)))
                .collect();
            self.0
                .push(format!("{} {:?} {:?}", text(s.name), tags, values));
            Ok(())
        }
    }

    /// A chunk as influxd 1.6 sends it for
    /// `SELECT *::field FROM m GROUP BY *` (captured).
    const CHUNK: &[u8] = b"\x81\xa7results\x91\x83\xacstatement_id\x00\xa6series\x91\x84\xa4name\xa1m\xa4tags\x82\xa4host\xa1a\xa1z\xa0\xa7columns\x93\xa4time\xa1f\xa1v\xa6values\x92\x93\xd3\r\xe0\xb6\xb3\xae\xbf\xcd\x15\xcb?\xf0\x00\x00\x00\x00\x00\x00\x01\x93\x02\xc0\xa2hi\xa7partial\xc3";

    #[test]
    fn reads_rows_with_types_and_sorted_nonempty_tags() {
        let mut rows = Collect(Vec::new());
        read_chunk(CHUNK, &mut rows).unwrap();
        assert_eq!(
            rows.0,
            vec![
                r#"m ["host=a"] [Int(1000000000123456789), Float(1.0), Int(1)]"#,
                r#"m ["host=a"] [Int(2), Nil, Str([104, 105])]"#,
            ]
        );
    }

    #[test]
    fn statement_errors_are_errors() {
        let chunk = b"\x81\xa7results\x91\x82\xacstatement_id\x00\xa5error\xa4oops";
        match read_chunk(chunk, &mut Collect(Vec::new())) {
            Err(AnswerError::Influx(e)) => assert_eq!(e, "oops"),
            other => panic!("{other:?}"),
        }
        match statement_series(
            br#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#,
        ) {
            Err(AnswerError::Influx(e)) => assert_eq!(e, "database not found: x"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_chunks_are_malformed_not_panics() {
        for cut in 0..CHUNK.len() {
            let _ = read_chunk(&CHUNK[..cut], &mut Collect(Vec::new()));
        }
    }
}
