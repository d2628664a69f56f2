//! Comparing what two `influxd` hold for one database, answer by answer, as
//! raw bytes: for every retention policy and measurement the whole
//! `SELECT * … GROUP BY *` (JSON, `epoch=ns`), `SHOW FIELD KEYS`,
//! `SHOW TAG KEYS` and `SHOW SERIES`; and per shard group of the source the
//! same `SELECT` as MessagePack, which keeps integers and floats apart
//! (JSON prints the float 2.0 as `2`, and a whole-range `SELECT` casts a
//! field that changes type between shard groups to float).

use std::collections::BTreeMap;

use serde_json::Value;

use super::dataset::{Format, Server};

/// A retention policy's shard group, `[start, end)` in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Group {
    pub rp: String,
    pub start: i64,
    pub end: i64,
}

/// What one server answered for one database, by query (database name left out).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub server: String,
    pub db: String,
    pub answers: BTreeMap<String, Vec<u8>>,
    /// Points per (rp, measurement) in the whole-range `SELECT`.
    pub rows: BTreeMap<(String, String), usize>,
}

/// `"name"`.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The shard groups of `db` on `server`, from `SHOW SHARDS`, sorted.
pub async fn shard_groups(server: &Server, db: &str) -> Vec<Group> {
    let doc = server.json("SHOW SHARDS", None).await;
    let series = doc
        .pointer("/results/0/series")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut groups = Vec::new();
    for s in series.iter().filter(|s| s["name"] == db) {
        for row in s["values"].as_array().into_iter().flatten() {
            let text = |i: usize| row[i].as_str().unwrap_or_default().to_string();
            let time = |i: usize| {
                super::admin::parse_rfc3339(&text(i))
                    .unwrap_or_else(|| panic!("SHOW SHARDS time {row}"))
            };
            let group = Group {
                rp: text(2),
                start: time(4),
                end: time(5),
            };
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
    }
    // by policy and time: SHOW SHARDS lists them in the order they were created
    groups.sort();
    groups
}

/// What `server` holds in `db`, queried per policy and measurement of
/// `db` on `server`, and per shard group in `groups` (take them from the
/// source, so both sides are asked the same).
pub async fn snapshot(server: &Server, db: &str, groups: &[Group]) -> Snapshot {
    let on = ident(db);
    let mut answers = BTreeMap::new();
    let mut rows = BTreeMap::new();
    let mut ask = |key: String, body: Vec<u8>| {
        answers.insert(key, body);
    };
    // policies by name: the order of SHOW RETENTION POLICIES is the order
    // they were created in, which a copy need not keep
    let mut policies = server
        .rows(&format!("SHOW RETENTION POLICIES ON {on}"), None)
        .await;
    policies.sort_by_key(|row| row[0].to_string());
    ask(
        "SHOW RETENTION POLICIES (sorted)".into(),
        format!("{policies:?}").into_bytes(),
    );
    let rps: Vec<String> = policies
        .iter()
        .filter_map(|row| row[0].as_str().map(String::from))
        .collect();
    let measurements = server
        .names(&format!("SHOW MEASUREMENTS ON {on}"), None)
        .await;
    ask(
        "SHOW MEASUREMENTS".into(),
        format!("{measurements:?}").into_bytes(),
    );
    for rp in &rps {
        for m in &measurements {
            let from = format!("{}.{}", ident(rp), ident(m));
            let select = format!("SELECT * FROM {on}.{from} GROUP BY *");
            let (status, body) = server.raw(&select, None, Format::Json).await;
            assert_eq!(status, 200, "{select}: {}", String::from_utf8_lossy(&body));
            rows.insert((rp.clone(), m.clone()), count_rows(&body));
            ask(format!("rp={rp} m={m}: SELECT *"), body);
            for show in ["FIELD KEYS", "TAG KEYS", "SERIES"] {
                let q = format!("SHOW {show} ON {on} FROM {from}");
                let (_, body) = server.raw(&q, None, Format::Json).await;
                ask(format!("rp={rp} m={m}: SHOW {show}"), body);
            }
            for g in groups.iter().filter(|g| g.rp == *rp) {
                let q = format!(
                    "SELECT * FROM {on}.{from} WHERE time >= {} AND time < {} GROUP BY *",
                    g.start, g.end
                );
                let (_, body) = server.raw(&q, None, Format::MsgPack).await;
                let typed = msgpack_to_json(&body)
                    .unwrap_or_else(|| panic!("{q}: not MessagePack: {body:?}"));
                ask(
                    format!("rp={rp} m={m} [{}, {}): typed", g.start, g.end),
                    typed.to_string().into_bytes(),
                );
            }
        }
    }
    rows.retain(|_, n| *n > 0);
    Snapshot {
        server: server.url.clone(),
        db: db.to_string(),
        answers,
        rows,
    }
}

/// Rows in all series of a JSON answer (0 for an error).
pub fn count_rows(body: &[u8]) -> usize {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        results: Vec<Statement>,
    }
    #[derive(serde::Deserialize)]
    struct Statement {
        #[serde(default)]
        series: Vec<Series>,
    }
    #[derive(serde::Deserialize)]
    struct Series {
        #[serde(default)]
        values: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Answer>(body)
        .ok()
        .and_then(|a| a.results.into_iter().next())
        .map_or(0, |r| r.series.iter().map(|s| s.values.len()).sum())
}

/// Panics naming every answer that differs between `expected` and `actual`.
pub fn assert_same(expected: &Snapshot, actual: &Snapshot) {
    let mut differences = Vec::new();
    let keys: std::collections::BTreeSet<&String> = expected
        .answers
        .keys()
        .chain(actual.answers.keys())
        .collect();
    for key in keys {
        let a = expected.answers.get(key);
        let b = actual.answers.get(key);
        if a != b {
            let show = |v: Option<&Vec<u8>>| match v {
                None => "(not asked)".to_string(),
                Some(bytes) => truncate(&String::from_utf8_lossy(bytes), 600),
            };
            differences.push(format!(
                "{key}\n  {} {}: {}\n  {} {}: {}",
                expected.server,
                expected.db,
                show(a),
                actual.server,
                actual.db,
                show(b)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} answers differ:\n{}",
        differences.len(),
        expected.answers.len(),
        differences.join("\n")
    );
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}… ({} bytes)", &text[..i], text.len()),
        None => text.to_string(),
    }
}

/// The expected row counts of `db` from the dataset, in [`Snapshot::rows`]'s shape.
pub fn expected_rows(
    dataset: &super::dataset::Dataset,
    db: &str,
) -> BTreeMap<(String, String), usize> {
    dataset.counts(db)
}

/// A MessagePack document as JSON that keeps floats apart from integers
/// (`2.0` stays `2.0`), map keys sorted, extensions (times) as
/// `"ext<type>:<hex>"`. `None` if it is not one whole document.
pub fn msgpack_to_json(bytes: &[u8]) -> Option<Value> {
    let mut at = 0;
    let value = decode(bytes, &mut at)?;
    (at == bytes.len()).then_some(value)
}

fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
    let slice = bytes.get(*at..*at + n)?;
    *at += n;
    Some(slice)
}

fn uint(bytes: &[u8], at: &mut usize, n: usize) -> Option<u64> {
    Some(
        take(bytes, at, n)?
            .iter()
            .fold(0, |v, b| v << 8 | u64::from(*b)),
    )
}

fn int(bytes: &[u8], at: &mut usize, n: usize) -> Option<i64> {
    let v = uint(bytes, at, n)?;
    let shift = 64 - 8 * n as u32;
    Some(((v << shift) as i64) >> shift)
}

fn decode(bytes: &[u8], at: &mut usize) -> Option<Value> {
    let tag = *bytes.get(*at)?;
    *at += 1;
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    Some(match tag {
        0x00..=0x7f => Value::from(tag),
        0xe0..=0xff => Value::from(tag as i8),
        0x80..=0x8f => map(bytes, at, usize::from(tag & 0x0f))?,
        0x90..=0x9f => array(bytes, at, usize::from(tag & 0x0f))?,
        0xa0..=0xbf => text(bytes, at, usize::from(tag & 0x1f))?,
        0xc0 => Value::Null,
        0xc2 => Value::Bool(false),
        0xc3 => Value::Bool(true),
        0xc4..=0xc6 => {
            let n = uint(bytes, at, 1 << (tag - 0xc4))? as usize;
            Value::String(format!("bin:{}", hex(take(bytes, at, n)?)))
        }
        0xc7..=0xc9 => {
            let n = uint(bytes, at, 1 << (tag - 0xc7))? as usize;
            ext(bytes, at, n)?
        }
        0xca => float(f64::from(f32::from_bits(uint(bytes, at, 4)? as u32))),
        0xcb => float(f64::from_bits(uint(bytes, at, 8)?)),
        0xcc..=0xcf => Value::from(uint(bytes, at, 1 << (tag - 0xcc))?),
        0xd0..=0xd3 => Value::from(int(bytes, at, 1 << (tag - 0xd0))?),
        0xd4..=0xd8 => ext(bytes, at, 1 << (tag - 0xd4))?,
        0xd9..=0xdb => {
            let n = uint(bytes, at, 1 << (tag - 0xd9))? as usize;
            text(bytes, at, n)?
        }
        0xdc | 0xdd => {
            let n = uint(bytes, at, 2 << (tag - 0xdc))? as usize;
            array(bytes, at, n)?
        }
        0xde | 0xdf => {
            let n = uint(bytes, at, 2 << (tag - 0xde))? as usize;
            map(bytes, at, n)?
        }
        0xc1 => return None,
    })
}

fn text(bytes: &[u8], at: &mut usize, n: usize) -> Option<Value> {
    Some(Value::String(
        String::from_utf8(take(bytes, at, n)?.to_vec()).ok()?,
    ))
}

fn ext(bytes: &[u8], at: &mut usize, n: usize) -> Option<Value> {
    let kind = take(bytes, at, 1)?[0];
    Some(Value::String(format!(
        "ext{kind}:{}",
        hex(take(bytes, at, n)?)
    )))
}

fn array(bytes: &[u8], at: &mut usize, n: usize) -> Option<Value> {
    (0..n)
        .map(|_| decode(bytes, at))
        .collect::<Option<Vec<_>>>()
        .map(Value::Array)
}

fn map(bytes: &[u8], at: &mut usize, n: usize) -> Option<Value> {
    let mut object = serde_json::Map::new();
    for _ in 0..n {
        let key = match decode(bytes, at)? {
            Value::String(s) => s,
            other => other.to_string(),
        };
        object.insert(key, decode(bytes, at)?);
    }
    Some(Value::Object(object))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
