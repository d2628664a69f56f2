//! `admin verify`: compares two nodes piece by piece (database, retention
//! policy, measurement, window): the number of points, the number of values
//! of every field, and a checksum of the points (series key, time, typed
//! field values) computed on both sides while the answers stream by. Lists
//! each piece that differs; the caller exits 1 when any does.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde::Serialize;

use crate::config::Config;

use super::answer::{Rows, SeriesHead};
use super::endpoint::{self, Allow};
use super::http::HttpClient;
use super::influx::Influx;
use super::msgpack::Scalar;
use super::pieces::{self, Piece, ScopeArgs, Selection};
use super::progress::{thousands, Display, Progress};
use super::schema::{self, Scope};
use super::time::{format_time, parse_go_duration};
use super::ControlError;

/// The arguments of `admin verify`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VerifyArgs {
    /// The reference: a node URL (http://user:pass@host:port) or CLUSTER/NODE
    #[arg(long, value_name = "SRC")]
    pub from: String,
    /// The node compared with it: a node URL or CLUSTER/NODE
    #[arg(long, value_name = "DST")]
    pub to: String,
    /// What to read: databases, retention policy, measurements, time range
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Compare windows of this duration (like 1h, 1d) instead of shard groups
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Print one JSON document instead of lines
    #[arg(long)]
    pub json: bool,
}

/// The counts and checksum of one side of one piece.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    pub points: u64,
    pub fields: BTreeMap<String, u64>,
    pub checksum: u64,
}

/// Adds up the rows of an answer.
#[derive(Default)]
struct Summer {
    points: u64,
    fields: BTreeMap<Vec<u8>, u64>,
    checksum: u64,
}

impl Rows for Summer {
    fn row(&mut self, series: &SeriesHead<'_>, values: &[Scalar<'_>]) -> Result<(), String> {
        if values[1..].iter().all(|v| matches!(v, Scalar::Nil)) {
            return Ok(());
        }
        let mut h = std::hash::DefaultHasher::new();
        series.name.hash(&mut h);
        for (k, v) in &series.tags {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        match values[0] {
            Scalar::Int(t) => t.hash(&mut h),
            other => return Err(format!("a row's time is {other:?}, not an integer")),
        }
        for (column, value) in series.columns[1..].iter().zip(&values[1..]) {
            let typed: (u8, u64, &[u8]) = match value {
                Scalar::Nil => continue,
                Scalar::Bool(b) => (b'b', u64::from(*b), b""),
                Scalar::Int(i) => (b'i', *i as u64, b""),
                Scalar::Uint(u) => (b'u', *u, b""),
                Scalar::Float(f) => (b'f', f.to_bits(), b""),
                Scalar::Str(s) => (b's', s.len() as u64, s),
            };
            column.hash(&mut h);
            typed.hash(&mut h);
            match self.fields.get_mut(*column) {
                Some(n) => *n += 1,
                None => {
                    self.fields.insert(column.to_vec(), 1);
                }
            }
        }
        self.points += 1;
        // a sum does not depend on the order the rows arrive in
        self.checksum = self.checksum.wrapping_add(h.finish());
        Ok(())
    }
}

impl Summer {
    fn digest(self) -> Digest {
        Digest {
            points: self.points,
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
                .collect(),
            checksum: self.checksum,
        }
    }
}

/// One piece that differs.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub db: String,
    pub rp: String,
    pub measurement: String,
    pub start: String,
    pub end: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub src_points: u64,
    pub dst_points: u64,
    /// Fields whose value counts differ: name → [src, dst].
    pub fields: BTreeMap<String, [u64; 2]>,
    /// Same counts, other content.
    pub content_differs: bool,
}

/// What a verify found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub from: String,
    pub to: String,
    pub equal: bool,
    pub pieces: u64,
    pub src_points: u64,
    pub dst_points: u64,
    pub differences: Vec<Difference>,
    #[serde(skip)]
    pub summary: String,
}

impl VerifyReport {
    /// Lines for a terminal: each difference, then the summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for d in &self.differences {
            out.push_str(&format!(
                "DIFFERS {}.{}.{} [{}, {}): {} points at {}, {} at {}",
                d.db,
                d.rp,
                d.measurement,
                d.start,
                d.end,
                thousands(d.src_points),
                self.from,
                thousands(d.dst_points),
                self.to
            ));
            let fields: Vec<String> = d
                .fields
                .iter()
                .map(|(f, [a, b])| format!("{f} {a} vs {b}"))
                .collect();
            if !fields.is_empty() {
                out.push_str(&format!("; values: {}", fields.join(", ")));
            }
            if d.content_differs {
                out.push_str("; same counts, different values");
            }
            out.push('\n');
        }
        out.push_str(&self.summary);
        out.push('\n');
        out
    }

    /// `Err` when something differs, for the exit status.
    pub fn outcome(&self) -> Result<(), ControlError> {
        if self.equal {
            Ok(())
        } else {
            Err(ControlError::Failed(format!(
                "verify: {} of {} pieces differ between {} and {}",
                self.differences.len(),
                self.pieces,
                self.from,
                self.to
            )))
        }
    }
}

/// Runs `admin verify`.
pub async fn run(
    config: &Config,
    args: &VerifyArgs,
    display: Display,
) -> Result<VerifyReport, ControlError> {
    let mut selection = args.scope.selection()?;
    if let Some(window) = &args.window {
        let ns = parse_go_duration(window)
            .ok()
            .or_else(|| parse_day_week(window))
            .filter(|ns| *ns > 0)
            .ok_or_else(|| {
                ControlError::Usage(format!(
                    "--window: invalid duration {window:?} (like 1h, 1d)"
                ))
            })?;
        selection.window = Some(ns);
    }
    let src = endpoint::resolve(&args.from, config, Allow::Node)
        .await?
        .remove(0);
    let dst = endpoint::resolve(&args.to, config, Allow::Node)
        .await?
        .remove(0);
    let http = HttpClient::new().map_err(ControlError::Failed)?;
    let src = Influx::new(src, http.clone());
    let dst = Influx::new(dst, http);
    compare(&src, &dst, &args.scope.databases, &selection, display).await
}

fn parse_day_week(text: &str) -> Option<i64> {
    let (n, per) = if let Some(n) = text.strip_suffix('d') {
        (n, 86_400)
    } else {
        (text.strip_suffix('w')?, 7 * 86_400)
    };
    n.parse::<i64>().ok()?.checked_mul(per * 1_000_000_000)
}

/// The comparison itself, for the command and the job alike.
pub async fn compare(
    src: &Influx,
    dst: &Influx,
    databases: &[String],
    selection: &Selection,
    display: Display,
) -> Result<VerifyReport, ControlError> {
    let src_schema = schema::read(src, databases, Scope::Storage).await?;
    schema::check_rp(&src_schema, selection.rp.as_deref(), src)?;
    let dst_names = schema::database_names(dst).await?;
    let present: Vec<String> = src_schema
        .databases
        .iter()
        .map(|d| d.name.clone())
        .filter(|n| dst_names.contains(n))
        .collect();
    let dst_schema = schema::read(dst, &present, Scope::Storage).await?;
    // the pieces of both sides, so data only DST holds is found too
    let mut all = pieces::list(src, &src_schema.databases, selection).await?;
    all.extend(pieces::list(dst, &dst_schema.databases, selection).await?);
    all.sort();
    all.dedup();
    let mut progress = Progress::new("verify", all.len() as u64, display);
    let mut differences = Vec::new();
    let (mut src_points, mut dst_points) = (0, 0);
    for piece in &all {
        let dst_has_db = present.contains(&piece.db);
        let (a, b) = tokio::join!(digest(src, piece, true), digest(dst, piece, dst_has_db));
        let (a, b) = (a?, b?);
        src_points += a.points;
        dst_points += b.points;
        progress.add(a.points + b.points, 0);
        if a != b {
            let names: std::collections::BTreeSet<&String> =
                a.fields.keys().chain(b.fields.keys()).collect();
            let fields = names
                .into_iter()
                .filter_map(|f| {
                    let (x, y) = (
                        *a.fields.get(f).unwrap_or(&0),
                        *b.fields.get(f).unwrap_or(&0),
                    );
                    (x != y).then(|| (f.clone(), [x, y]))
                })
                .collect::<BTreeMap<_, _>>();
            let difference = Difference {
                db: piece.db.clone(),
                rp: piece.rp.clone(),
                measurement: piece.measurement.clone(),
                start: format_time(piece.window.start),
                end: format_time(piece.window.end),
                start_ns: piece.window.start,
                end_ns: piece.window.end,
                src_points: a.points,
                dst_points: b.points,
                content_differs: a.points == b.points && fields.is_empty(),
                fields,
            };
            progress.note(&format!(
                "{piece}: differs ({} vs {} points)",
                a.points, b.points
            ));
            differences.push(difference);
        }
        progress.piece_done(false);
    }
    let _ = progress.finish();
    let summary = if differences.is_empty() {
        format!(
            "verify: {} pieces compared, all equal ({} points)",
            all.len(),
            thousands(src_points)
        )
    } else {
        format!(
            "verify: {} pieces compared, {} {} ({} points at {}, {} at {})",
            all.len(),
            differences.len(),
            if differences.len() == 1 {
                "differs"
            } else {
                "differ"
            },
            thousands(src_points),
            src.label(),
            thousands(dst_points),
            dst.label()
        )
    };
    Ok(VerifyReport {
        from: src.label().to_string(),
        to: dst.label().to_string(),
        equal: differences.is_empty(),
        pieces: all.len() as u64,
        src_points,
        dst_points,
        differences,
        summary,
    })
}

/// The digest of one side of a piece (empty where the database is missing).
pub async fn digest(server: &Influx, piece: &Piece, has_db: bool) -> Result<Digest, ControlError> {
    let mut summer = Summer::default();
    if has_db {
        let mut stream = server.stream(&piece.db, &piece.select()).await?;
        while stream.next_chunk(&mut summer).await? {}
    }
    Ok(summer.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(rows: &[(&[u8], i64, Scalar<'_>)]) -> Digest {
        let mut s = Summer::default();
        for (tag, t, v) in rows {
            let head = SeriesHead {
                name: b"m",
                tags: vec![(b"h", tag)],
                columns: vec![b"time", b"v"],
                serial: 0,
            };
            s.row(&head, &[Scalar::Int(*t), *v]).unwrap();
        }
        s.digest()
    }

    #[test]
    fn order_does_not_matter_but_type_value_time_and_series_do() {
        let a = sum(&[(b"x", 1, Scalar::Int(1)), (b"y", 2, Scalar::Float(2.0))]);
        let b = sum(&[(b"y", 2, Scalar::Float(2.0)), (b"x", 1, Scalar::Int(1))]);
        assert_eq!(a, b);
        assert_eq!(a.points, 2);
        assert_eq!(a.fields.get("v"), Some(&2));
        for other in [
            sum(&[(b"x", 1, Scalar::Float(1.0)), (b"y", 2, Scalar::Float(2.0))]),
            sum(&[(b"x", 1, Scalar::Int(1)), (b"y", 3, Scalar::Float(2.0))]),
            sum(&[(b"z", 1, Scalar::Int(1)), (b"y", 2, Scalar::Float(2.0))]),
            sum(&[(b"x", 1, Scalar::Str(b"1")), (b"y", 2, Scalar::Float(2.0))]),
        ] {
            assert_eq!(other.points, a.points);
            assert_ne!(other.checksum, a.checksum);
        }
    }

    #[test]
    fn windows_in_days_and_weeks() {
        assert_eq!(parse_day_week("2d"), Some(2 * 86_400_000_000_000));
        assert_eq!(parse_day_week("1w"), Some(7 * 86_400_000_000_000));
        assert_eq!(parse_day_week("x"), None);
    }
}
