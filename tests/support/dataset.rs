//! The data the `admin` data-command tests copy, back up and compare, and a
//! small client for the real `influxd` they load it into.
//!
//! [`Dataset::build`] is small (544 points) but holds what an exact
//! copy can get wrong: all four field types, a tag and a field with the
//! same name, escapes and Unicode in measurement, tag and field names and
//! values, newlines inside string values, float and integer extremes, `-0`,
//! a point before 1970, timestamps with every nanosecond digit set, points
//! years apart (several shard groups), a field that is an integer in one
//! shard group and a float in another, three retention policies (one not
//! default with `SHARD DURATION 1d`, one empty with a finite duration), a
//! second database whose name has a space and whose default policy is not
//! `autogen`, and continuous queries (never run: the harness turns the CQ
//! service off). [`create_users`] adds users with privileges for servers
//! started with `Influxd::start_with_admin`. [`load_big`] writes many
//! points in large batches, for a copy that must still be running when it
//! is killed.
//!
//! Everything goes in through plain `/write` and `/query` calls.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::Influxd;

/// The main database of the dataset.
pub const DB: &str = "dset";
/// The second database: a space in its name, default policy `main`.
pub const DB2: &str = "second db";

/// `2010-01-01T00:00:00Z` and friends, in nanoseconds.
pub const T2010: i64 = 1_262_304_000_000_000_000;
pub const T2015: i64 = 1_420_070_400_000_000_000;
pub const T2020: i64 = 1_577_836_800_000_000_000;
pub const T2021: i64 = 1_609_459_200_000_000_000;
const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;

/// The measurement whose name needs every escape line protocol has.
pub const WEIRD: &str = "we ird,m=\"q\"";

/// Schema statements, in the order they are run.
pub const SCHEMA: &[&str] = &[
    "CREATE DATABASE \"dset\"",
    "CREATE RETENTION POLICY \"daily\" ON \"dset\" DURATION INF REPLICATION 1 SHARD DURATION 1d",
    "CREATE RETENTION POLICY \"short\" ON \"dset\" DURATION 720h REPLICATION 1 SHARD DURATION 2h",
    "CREATE DATABASE \"second db\"",
    "CREATE RETENTION POLICY \"main\" ON \"second db\" DURATION INF REPLICATION 1 SHARD DURATION 30d DEFAULT",
    "CREATE CONTINUOUS QUERY \"cq_cpu\" ON \"dset\" BEGIN SELECT mean(\"usage\") AS \"usage\" INTO \"dset\".\"daily\".\"cpu_1h\" FROM \"dset\".\"autogen\".\"cpu\" GROUP BY time(1h), * END",
    "CREATE CONTINUOUS QUERY \"cq resample\" ON \"dset\" RESAMPLE EVERY 2h FOR 4h BEGIN SELECT count(\"value\") INTO \"dset\".\"autogen\".\"dup_count\" FROM \"dset\".\"autogen\".\"dup\" GROUP BY time(1h) END",
    "CREATE CONTINUOUS QUERY \"cq2\" ON \"second db\" BEGIN SELECT max(\"v\") INTO \"m_max\" FROM \"m\" GROUP BY time(1d) END",
];

/// One point: where it goes, its line and its time.
#[derive(Debug, Clone)]
pub struct Point {
    pub db: &'static str,
    pub rp: &'static str,
    pub measurement: &'static str,
    pub time: i64,
    pub line: String,
}

/// The points of the dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub points: Vec<Point>,
}

impl Dataset {
    /// The dataset, the same every time.
    pub fn build() -> Dataset {
        let mut points = Vec::new();
        cpu(&mut points);
        weird(&mut points);
        dup_and_mixed(&mut points);
        daily(&mut points);
        second_db(&mut points);
        Dataset { points }
    }

    pub fn total(&self) -> usize {
        self.points.len()
    }

    /// Points per (db, rp, measurement).
    pub fn counts(&self, db: &str) -> BTreeMap<(String, String), usize> {
        let mut counts = BTreeMap::new();
        for p in self.points.iter().filter(|p| p.db == db) {
            *counts
                .entry((p.rp.to_string(), p.measurement.to_string()))
                .or_insert(0) += 1;
        }
        counts
    }

    /// Points of `db`.`rp`.`measurement` with `start <= time < end`.
    pub fn count_in(&self, db: &str, rp: &str, measurement: &str, start: i64, end: i64) -> usize {
        self.points
            .iter()
            .filter(|p| p.db == db && p.rp == rp && p.measurement == measurement)
            .filter(|p| p.time >= start && p.time < end)
            .count()
    }

    /// Points of `db` (every policy) with `start <= time < end`.
    pub fn count_db_in(&self, db: &str, start: i64, end: i64) -> usize {
        self.points
            .iter()
            .filter(|p| p.db == db && p.time >= start && p.time < end)
            .count()
    }
}

/// A timestamp with every nanosecond digit in use.
fn ns(base: i64, i: i64) -> i64 {
    base + i * HOUR + i * 1_000_003 + 123_456_789
}

fn push(
    points: &mut Vec<Point>,
    db: &'static str,
    rp: &'static str,
    m: &'static str,
    time: i64,
    line: String,
) {
    points.push(Point {
        db,
        rp,
        measurement: m,
        time,
        line: format!("{line} {time}"),
    });
}

/// `cpu` in `autogen`: three shard groups years apart, one point before 1970.
fn cpu(points: &mut Vec<Point>) {
    for base in [T2010, T2015, T2020] {
        for i in 0..60 {
            for (h, host) in ["a", "b"].into_iter().enumerate() {
                let time = ns(base, i) + h as i64;
                let mut fields = vec![format!("usage={}", 12.345_678_901_234_5 + i as f64 / 7.0)];
                if i % 3 != 0 {
                    fields.push(format!("count={}i", i * 1000 + 7 - 50_000));
                }
                if i % 4 != 1 {
                    fields.push(format!("ok={}", i % 2 == 0));
                }
                if i % 5 != 2 {
                    fields.push(format!("note=\"run {i} on {host}\""));
                }
                let tags = if host == "b" { ",region=eu\\ west" } else { "" };
                push(
                    points,
                    DB,
                    "autogen",
                    "cpu",
                    time,
                    format!("cpu,host={host}{tags} {}", fields.join(",")),
                );
            }
        }
    }
    push(
        points,
        DB,
        "autogen",
        "cpu",
        -14_182_939_876_543_211,
        "cpu,host=a usage=0.5,count=-3i,ok=false,note=\"moon\"".to_string(),
    );
}

/// The measurement with escapes everywhere, and extreme values.
fn weird(points: &mut Vec<Point>) {
    let key = "we\\ ird\\,m=\"q\",t\\ k\\=1=v\\,a\\ l\\=x,path=a\\b,city=Z\u{fc}rich\\ \u{2713}";
    let extremes = [
        "big=1.7976931348623157e308,tiny=5e-324,neg=-0.0,j=9223372036854775807i",
        "big=-1.7976931348623157e308,tiny=1e-300,neg=-1.5,j=-9223372036854775807i",
    ];
    for base in [T2010, T2020] {
        for i in 0..10 {
            let s = format!("quo\\\"te {i} back\\\\slash\nnew line \u{2713} \u{1F600} tab\there");
            let line = format!(
                "{key} f\\=k\\ 1\\,x={}.25,s=\"{s}\",empty=\"\",b={},i={}i,{}",
                i,
                if i % 2 == 0 { "T" } else { "false" },
                -(i * 7),
                extremes[i as usize % 2]
            );
            push(points, DB, "autogen", WEIRD, ns(base, i), line);
        }
    }
}

/// A tag and a field named alike; a field that changes type between shard groups.
fn dup_and_mixed(points: &mut Vec<Point>) {
    for i in 0..10 {
        let line = format!("dup,host=h{} host=\"field-h{i}\",value={i}.5", i % 3);
        push(points, DB, "autogen", "dup", ns(T2015, i), line);
    }
    for i in 0..10 {
        // beyond 2^53: a copy through a float would change the digits
        let line = format!("mixed,kind=int v={}i", 9_007_199_254_740_993_i64 + i);
        push(points, DB, "autogen", "mixed", ns(T2010, i), line);
        // integral floats too: a copy that wrote them as integers would show
        let value = if i % 2 == 0 {
            format!("{i}")
        } else {
            format!("0.{i}")
        };
        push(
            points,
            DB,
            "autogen",
            "mixed",
            ns(T2015, i),
            format!("mixed,kind=int v={value}"),
        );
    }
}

/// `cpu` and `events` in the non-default policy `daily` (1-day shard groups).
fn daily(points: &mut Vec<Point>) {
    for day in 0..4 {
        for i in 0..25 {
            let time = T2021 + day * DAY + i * 3_000_000_011 + 7;
            let line = format!("cpu,host=a usage={}.125,count={i}i", day * 100 + i);
            push(points, DB, "daily", "cpu", time, line);
        }
    }
    for i in 0..8 {
        let line = format!("events,kind=deploy msg=\"release {i}: \\\"ok\\\"\",ok=true");
        push(points, DB, "daily", "events", ns(T2021, i * 13), line);
    }
}

/// `second db`: data in its default policy `main` and in `autogen`.
fn second_db(points: &mut Vec<Point>) {
    for i in 0..20 {
        let line = format!("m,k=v{} v={i}i,f={i}.75", i % 2);
        push(points, DB2, "main", "m", ns(T2015, i * 40), line);
    }
    for i in 0..5 {
        push(
            points,
            DB2,
            "autogen",
            "m",
            ns(T2020, i),
            format!("m,k=old v={i}i"),
        );
    }
}

/// How to reach one `influxd`: its URL and the credentials to send.
#[derive(Debug, Clone)]
pub struct Server {
    pub url: String,
    pub auth: Option<(String, String)>,
    client: reqwest::Client,
}

/// How `/query` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    MsgPack,
}

impl Server {
    /// `influxd` without credentials.
    pub fn of(influxd: &Influxd) -> Server {
        Server::at(&influxd.url(), None)
    }

    /// `influxd` as `user`.
    pub fn as_user(influxd: &Influxd, user: &str, password: &str) -> Server {
        Server::at(&influxd.url(), Some((user, password)))
    }

    pub fn at(url: &str, auth: Option<(&str, &str)>) -> Server {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        Server {
            url: url.to_string(),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            client,
        }
    }

    /// The URL with the credentials in it, as SRC/DST of an admin command.
    pub fn spec(&self) -> String {
        match &self.auth {
            None => self.url.clone(),
            Some((user, password)) => {
                self.url
                    .replacen("://", &format!("://{user}:{password}@"), 1)
            }
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.post(format!("{}{path}", self.url));
        match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// `POST /query` with `epoch=ns`: status and body as sent.
    pub async fn raw(&self, q: &str, db: Option<&str>, format: Format) -> (u16, Vec<u8>) {
        let mut form = vec![("q", q), ("epoch", "ns")];
        if let Some(db) = db {
            form.push(("db", db));
        }
        let mut request = self.post("/query").form(&form);
        if format == Format::MsgPack {
            request = request.header("Accept", "application/x-msgpack");
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {}/query ({q}) failed: {e}", self.url));
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("query body").to_vec();
        (status, body)
    }

    /// A query whose every statement must succeed; the answer as JSON.
    pub async fn json(&self, q: &str, db: Option<&str>) -> Value {
        let (status, body) = self.raw(q, db, Format::Json).await;
        let text = String::from_utf8_lossy(&body);
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{q}: answer {status} is not JSON ({e}): {text}"));
        let failed = doc.get("error").is_some()
            || doc["results"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r.get("error").is_some()));
        assert!(
            status == 200 && !failed,
            "{q} on {}: {status} {text}",
            self.url
        );
        doc
    }

    /// The rows of the first series of the first result.
    pub async fn rows(&self, q: &str, db: Option<&str>) -> Vec<Vec<Value>> {
        let doc = self.json(q, db).await;
        doc.pointer("/results/0/series/0/values")
            .and_then(Value::as_array)
            .map(|rows| {
                rows.iter()
                    .map(|r| r.as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first column of [`rows`](Self::rows), as strings.
    pub async fn names(&self, q: &str, db: Option<&str>) -> Vec<String> {
        let rows = self.rows(q, db).await;
        rows.iter()
            .filter_map(|r| r.first()?.as_str().map(String::from))
            .collect()
    }

    pub async fn databases(&self) -> Vec<String> {
        self.names("SHOW DATABASES", None).await
    }

    /// `POST /write?db=..&rp=..` (nanoseconds), asserting 204.
    pub async fn write(&self, db: &str, rp: &str, body: String) {
        let response = self
            .post("/write")
            .query(&[("db", db), ("rp", rp), ("precision", "ns")])
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {}/write failed: {e}", self.url));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 204, "write to {db}.{rp} on {}: {text}", self.url);
    }
}

/// Creates the schema and writes the dataset; returns it.
pub async fn load(server: &Server) -> Dataset {
    for statement in SCHEMA {
        server.json(statement, None).await;
    }
    let dataset = Dataset::build();
    let mut batches: BTreeMap<(&str, &str), String> = BTreeMap::new();
    for p in &dataset.points {
        let batch = batches.entry((p.db, p.rp)).or_default();
        batch.push_str(&p.line);
        batch.push('\n');
    }
    for ((db, rp), body) in batches {
        server.write(db, rp, body).await;
    }
    dataset
}

/// Users of the dataset with their passwords (`None`: not in the password file).
pub const USERS: &[(&str, Option<&str>)] = &[
    ("reader", Some("read-pass")),
    ("writer", Some("it's:se\"cret")),
    ("ops", Some("ops pass")),
    ("nopass", None),
];

/// Creates [`USERS`]: `reader` may read `dset`, `writer` write it, `ops` is
/// an admin, `nopass` has every privilege on `second db`.
pub async fn create_users(server: &Server) {
    let quote = |p: &str| p.replace('\\', "\\\\").replace('\'', "\\'");
    for (user, password) in USERS {
        let password = password.unwrap_or("unknown-elsewhere");
        let q = format!("CREATE USER \"{user}\" WITH PASSWORD '{}'", quote(password));
        server.json(&q, None).await;
    }
    for q in [
        "GRANT READ ON \"dset\" TO \"reader\"",
        "GRANT WRITE ON \"dset\" TO \"writer\"",
        "GRANT ALL PRIVILEGES TO \"ops\"",
        "GRANT ALL ON \"second db\" TO \"nopass\"",
    ] {
        server.json(q, None).await;
    }
}

/// The `name:password` file for `--user-password-file`.
pub fn password_file() -> String {
    USERS
        .iter()
        .filter_map(|(user, password)| Some(format!("{user}:{}\n", (*password)?)))
        .collect()
}

/// Shape of [`load_big`]'s data.
#[derive(Debug, Clone, Copy)]
pub struct Big {
    pub measurements: usize,
    /// Shard groups (4 weeks apart, so never the same 7-day group).
    pub groups: usize,
    pub per_piece: usize,
}

impl Big {
    pub fn total(&self) -> usize {
        self.measurements * self.groups * self.per_piece
    }
}

/// Creates `db` and writes `big.total()` points in batches of 50,000 lines.
pub async fn load_big(server: &Server, db: &str, big: Big) {
    server
        .json(&format!("CREATE DATABASE \"{db}\""), None)
        .await;
    let mut body = String::with_capacity(4 << 20);
    let mut lines = 0;
    for g in 0..big.groups as i64 {
        let base = T2010 + g * 28 * DAY;
        for m in 0..big.measurements {
            for i in 0..big.per_piece as i64 {
                let time = base + i * 1_000_003 + g;
                body.push_str(&format!(
                    "big{m},host=h{} v={}.5,n={i}i,s=\"p{i}\" {time}\n",
                    i % 10,
                    i / 3
                ));
                lines += 1;
                if lines % 50_000 == 0 {
                    server.write(db, "autogen", std::mem::take(&mut body)).await;
                }
            }
        }
    }
    if !body.is_empty() {
        server.write(db, "autogen", body).await;
    }
}
