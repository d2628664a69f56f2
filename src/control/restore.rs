//! `admin restore`: loads a backup made by `admin backup` into a node or
//! cluster. Checks every file the restore needs against the manifest
//! (present, whole, sha256) before anything is written; creates the
//! databases, retention policies and continuous queries (rewritten to the
//! new name with `--as`); loads each file in batches and checks its point
//! count against the manifest. Loaded files are recorded in a state file
//! under `[buffer] dir`, so an interrupted restore resumes.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::protocol::influxql::lexer::{tokens, TokenKind};

use super::backfill::BATCH_POINTS;
use super::backup::{hex, FileEntry, Manifest, FORMAT, MANIFEST};
use super::endpoint::{self, Allow};
use super::http::HttpClient;
use super::influx::{ident, Influx};
use super::ledger::{self, Ledger};
use super::lines::point_end;
use super::progress::{Display, Progress};
use super::schema::{self, Database, Passwords, Schema, Scope};
use super::writer::Writers;
use super::ControlError;

/// The arguments of `admin restore`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RestoreArgs {
    /// The backup directory (holding manifest.json)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to load it: a node URL, CLUSTER/NODE, or CLUSTER (every write-enabled node of it)
    #[arg(long, value_name = "DST")]
    pub to: String,
    /// Only this database of the backup
    #[arg(long = "db", value_name = "DB")]
    pub database: Option<String>,
    /// Load it under this database name instead (continuous queries are rewritten to it)
    #[arg(long = "as", value_name = "NEWDB")]
    pub as_db: Option<String>,
    /// The file recording loaded files (default: under [buffer] dir, named after the arguments)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Forget what the state file records and start over
    #[arg(long)]
    pub restart: bool,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// Each file loaded now (relative path, points), in order.
    pub loaded: Vec<(String, u64)>,
    /// Files loaded by an earlier, interrupted run.
    pub already_loaded: usize,
    pub failed_nodes: Vec<String>,
    pub summary: String,
}

impl RestoreReport {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (path, points) in &self.loaded {
            out.push_str(&format!("loaded {path} ({points} points)\n"));
        }
        out.push_str(&self.summary);
        out.push('\n');
        out
    }

    pub fn outcome(&self) -> Result<(), ControlError> {
        if self.failed_nodes.is_empty() {
            return Ok(());
        }
        Err(ControlError::Failed(format!(
            "restore incomplete: {} (run the same command again once the node is back)",
            self.failed_nodes.join("; ")
        )))
    }
}

/// Reads and checks `DIR/manifest.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, ControlError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path)
        .map_err(|e| ControlError::Failed(format!("backup manifest {}: {e}", path.display())))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
        ControlError::Failed(format!(
            "backup manifest {} is not valid: {e}",
            path.display()
        ))
    })?;
    if manifest.format != FORMAT {
        return Err(ControlError::Failed(format!(
            "backup manifest {} has format {}, this tool reads {FORMAT}",
            path.display(),
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Runs `admin restore`.
pub async fn run(
    config: &Config,
    args: &RestoreArgs,
    display: Display,
    ledger: Option<&mut dyn Ledger>,
) -> Result<RestoreReport, ControlError> {
    let manifest = read_manifest(&args.dir)?;
    let databases = choose(&manifest, args.database.as_deref(), args.as_db.as_deref())?;
    let dst = endpoint::resolve(&args.to, config, Allow::NodeOrCluster).await?;
    let work = format!(
        "restore of {} to {} db={:?} as={:?} created={}",
        args.dir.display(),
        dst.iter()
            .map(|d| d.base.as_str())
            .collect::<Vec<_>>()
            .join(","),
        args.database,
        args.as_db,
        manifest.created
    );
    let mut file_ledger = None;
    let ledger = ledger::given_or_file(
        ledger,
        &mut file_ledger,
        args.state.as_deref(),
        args.restart,
        &config.buffer.dir,
        "restore",
        &work,
    )?;
    let http = HttpClient::new().map_err(ControlError::Failed)?;
    let dst: Vec<Influx> = dst
        .into_iter()
        .map(|e| Influx::new(e, http.clone()))
        .collect();
    restore(
        &args.dir,
        &manifest,
        &databases,
        args.as_db.as_deref(),
        dst,
        ledger,
        display,
    )
    .await
}

/// The databases of the manifest to restore.
pub fn choose(
    manifest: &Manifest,
    only: Option<&str>,
    as_db: Option<&str>,
) -> Result<Vec<Database>, ControlError> {
    let chosen: Vec<Database> = match only {
        Some(name) => {
            let db = manifest
                .databases
                .iter()
                .find(|d| d.name == name)
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        manifest.databases.iter().map(|d| d.name.as_str()).collect();
                    ControlError::Failed(format!(
                        "the backup holds no database {name:?} (it holds: {})",
                        names.join(", ")
                    ))
                })?;
            vec![db.clone()]
        }
        None => manifest.databases.clone(),
    };
    if let Some(new) = as_db {
        if chosen.len() != 1 {
            return Err(ControlError::Usage(format!(
                "--as needs one database, and the backup holds {}: name it with --db",
                chosen.len()
            )));
        }
        if new.is_empty() {
            return Err(ControlError::Usage("--as needs a database name".into()));
        }
    }
    Ok(chosen)
}

/// The restore itself, for the command and the job alike.
pub async fn restore(
    dir: &Path,
    manifest: &Manifest,
    databases: &[Database],
    as_db: Option<&str>,
    dst: Vec<Influx>,
    ledger: &mut dyn Ledger,
    display: Display,
) -> Result<RestoreReport, ControlError> {
    let files: Vec<&FileEntry> = manifest
        .files
        .iter()
        .filter(|f| databases.iter().any(|d| d.name == f.db))
        .collect();
    check_files(dir, &files)?;
    let renamed: Vec<Database> = databases
        .iter()
        .map(|db| match as_db {
            Some(new) => rename(db, new),
            None => db.clone(),
        })
        .collect();
    let wanted = Schema {
        databases: renamed,
        notes: Vec::new(),
        users: Ok(Vec::new()),
    };
    for node in &dst {
        let existing = schema::database_names(node).await?;
        let present: Vec<String> = wanted
            .databases
            .iter()
            .map(|d| d.name.clone())
            .filter(|n| existing.contains(n))
            .collect();
        let mut have = schema::read(node, &present, Scope::Everything).await?;
        have.users = Ok(Vec::new());
        let plan = schema::plan(&wanted, &have, Scope::Everything, &Passwords::default());
        schema::apply(node, &plan).await?;
    }
    let mut progress = Progress::counting("files", "restore", files.len() as u64, display);
    let mut writers = Writers::new(dst);
    let mut loaded = Vec::new();
    let mut already_loaded = 0;
    for file in files {
        if ledger.done(&file.path).is_some() {
            already_loaded += 1;
            progress.piece_done(true);
            continue;
        }
        let db = as_db.unwrap_or(&file.db);
        let points = load_file(dir, file, db, &mut writers, &mut progress).await?;
        if points != file.points {
            return Err(ControlError::Failed(format!(
                "backup file {} holds {points} points, the manifest says {}",
                file.path, file.points
            )));
        }
        if !writers.any_failed() {
            ledger.record(&file.path, serde_json::json!({ "points": points }))?;
        }
        loaded.push((file.path.clone(), points));
        progress.piece_done(false);
    }
    writers.drain().await?;
    let summary = progress.finish();
    Ok(RestoreReport {
        loaded,
        already_loaded,
        failed_nodes: writers.failures(),
        summary,
    })
}

/// Every file present, whole and with its checksum; all problems at once.
fn check_files(dir: &Path, files: &[&FileEntry]) -> Result<(), ControlError> {
    let mut problems = Vec::new();
    for file in files {
        if let Err(problem) = check_file(dir, file) {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(ControlError::Failed(format!(
        "the backup in {} is damaged, nothing was restored: {}",
        dir.display(),
        problems.join("; ")
    )))
}

fn check_file(dir: &Path, file: &FileEntry) -> Result<(), String> {
    if file
        .path
        .split('/')
        .any(|part| part == ".." || part.is_empty())
        || file.path.starts_with('/')
    {
        return Err(format!(
            "backup file {:?}: the manifest names a path outside the backup",
            file.path
        ));
    }
    let path = dir.join(&file.path);
    let mut handle =
        File::open(&path).map_err(|e| format!("backup file {} is missing: {e}", file.path))?;
    let mut hash = Sha256::new();
    let mut bytes: u64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = handle
            .read(&mut buf)
            .map_err(|e| format!("backup file {} cannot be read: {e}", file.path))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    if bytes < file.bytes {
        return Err(format!(
            "backup file {} is truncated ({bytes} of {} bytes)",
            file.path, file.bytes
        ));
    }
    let found = hex(&hash.finalize());
    if found != file.sha256 || bytes != file.bytes {
        return Err(format!(
            "backup file {} fails its sha256 check (expected {}, found {found})",
            file.path, file.sha256
        ));
    }
    Ok(())
}

/// Loads one file into `db`; returns the points read from it.
async fn load_file(
    dir: &Path,
    file: &FileEntry,
    db: &str,
    writers: &mut Writers,
    progress: &mut Progress,
) -> Result<u64, ControlError> {
    let failed =
        |e: std::io::Error| ControlError::Failed(format!("backup file {}: {e}", file.path));
    let handle = File::open(dir.join(&file.path)).map_err(failed)?;
    let mut reader = MultiGzDecoder::new(BufReader::with_capacity(1 << 20, handle));
    let mut buf: Vec<u8> = Vec::with_capacity(2 << 20);
    let mut scanned = 0; // where the next point starts in buf
    let mut batch_points = 0;
    let mut total: u64 = 0;
    let mut block = vec![0u8; 1 << 20];
    let mut finished = false;
    loop {
        while batch_points < BATCH_POINTS {
            match point_end(&buf, scanned) {
                Some(end) => {
                    scanned = end;
                    batch_points += 1;
                }
                None => break,
            }
        }
        if batch_points >= BATCH_POINTS || (finished && batch_points > 0) {
            let rest = buf.split_off(scanned);
            let batch = std::mem::replace(&mut buf, rest);
            progress.add(batch_points as u64, batch.len() as u64);
            total += batch_points as u64;
            writers
                .send(db, &file.rp, Bytes::from(batch))
                .await
                .map_err(|e| ControlError::Failed(format!("backup file {}: {e}", file.path)))?;
            scanned = 0;
            batch_points = 0;
            continue;
        }
        if finished {
            if !buf.iter().all(u8::is_ascii_whitespace) {
                return Err(ControlError::Failed(format!(
                    "backup file {}: the last point is cut short",
                    file.path
                )));
            }
            break;
        }
        let n = reader.read(&mut block).map_err(failed)?;
        buf.extend_from_slice(&block[..n]);
        finished = n == 0;
    }
    writers
        .drain()
        .await
        .map_err(|e| ControlError::Failed(format!("backup file {}: {e}", file.path)))?;
    Ok(total)
}

/// `db` under the name `new`, its continuous queries rewritten to it.
fn rename(db: &Database, new: &str) -> Database {
    Database {
        name: new.to_string(),
        retention_policies: db.retention_policies.clone(),
        continuous_queries: db
            .continuous_queries
            .iter()
            .map(|cq| super::schema::ContinuousQuery {
                name: cq.name.clone(),
                query: rewrite_database(&cq.query, &db.name, new),
            })
            .collect(),
    }
}

/// The text of a continuous query with every reference to database `old`
/// (after `ON`, and the first part of `db.rp.m` and `db..m` names) replaced by `new`.
pub fn rewrite_database(query: &str, old: &str, new: &str) -> String {
    let all: Vec<_> = tokens(query).collect();
    let is_name = |i: usize| {
        all.get(i)
            .is_some_and(|t| matches!(t.kind, TokenKind::Word | TokenKind::QuotedIdent))
    };
    let is_dot = |i: usize| {
        all.get(i)
            .is_some_and(|t| t.kind == TokenKind::Punct && t.text == ".")
    };
    let mut out = String::with_capacity(query.len() + new.len());
    let mut copied = 0;
    for (i, token) in all.iter().enumerate() {
        if !is_name(i) || unquote(token.text, token.kind) != old {
            continue;
        }
        let after_on = i > 0 && all[i - 1].is_keyword("ON");
        let first_part = !(i > 0 && is_dot(i - 1))
            && is_dot(i + 1)
            && (is_dot(i + 2) || (is_name(i + 2) && is_dot(i + 3)));
        if after_on || first_part {
            out.push_str(&query[copied..token.start]);
            out.push_str(&ident(new));
            copied = token.end();
        }
    }
    out.push_str(&query[copied..]);
    out
}

fn unquote(text: &str, kind: TokenKind) -> String {
    if kind != TokenKind::QuotedIdent {
        return text.to_string();
    }
    let inner = text.strip_prefix('"').unwrap_or(text);
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cq_text_follows_the_new_name() {
        let q = r#"CREATE CONTINUOUS QUERY cq ON telegraf BEGIN SELECT mean(v) INTO telegraf."long".m_1h FROM telegraf.autogen.m, "telegraf"..x GROUP BY time(1h) END"#;
        assert_eq!(
            rewrite_database(q, "telegraf", "copy"),
            r#"CREATE CONTINUOUS QUERY cq ON "copy" BEGIN SELECT mean(v) INTO "copy"."long".m_1h FROM "copy".autogen.m, "copy"..x GROUP BY time(1h) END"#
        );
        // a measurement or policy that happens to share the name is left alone
        let q = r#"CREATE CONTINUOUS QUERY c ON d BEGIN SELECT max(d) INTO d.d FROM d GROUP BY time(1m) END"#;
        assert_eq!(
            rewrite_database(q, "d", "n"),
            r#"CREATE CONTINUOUS QUERY c ON "n" BEGIN SELECT max(d) INTO d.d FROM d GROUP BY time(1m) END"#
        );
    }

    #[test]
    fn as_needs_exactly_one_database() {
        let db = |n: &str| Database {
            name: n.into(),
            retention_policies: vec![],
            continuous_queries: vec![],
        };
        let manifest = Manifest {
            format: FORMAT,
            tool: String::new(),
            created: String::new(),
            source: String::new(),
            start: String::new(),
            end: String::new(),
            databases: vec![db("a"), db("b")],
            files: vec![],
            points: 0,
        };
        assert!(matches!(
            choose(&manifest, None, Some("x")),
            Err(ControlError::Usage(_))
        ));
        assert_eq!(
            choose(&manifest, Some("b"), Some("x")).unwrap()[0].name,
            "b"
        );
        assert!(matches!(
            choose(&manifest, Some("z"), None),
            Err(ControlError::Failed(_))
        ));
    }

    #[test]
    fn damaged_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/f.lp.gz"), b"abc").unwrap();
        let entry = |path: &str, bytes: u64, sha: &str| FileEntry {
            path: path.into(),
            db: "d".into(),
            rp: "r".into(),
            measurement: "m".into(),
            start_ns: 0,
            end_ns: 1,
            points: 1,
            bytes,
            sha256: sha.into(),
        };
        let good = hex(&Sha256::digest(b"abc"));
        assert!(check_file(dir.path(), &entry("data/f.lp.gz", 3, &good)).is_ok());
        let e = check_file(dir.path(), &entry("data/f.lp.gz", 3, "00")).unwrap_err();
        assert!(e.contains("data/f.lp.gz fails its sha256"), "{e}");
        let e = check_file(dir.path(), &entry("data/f.lp.gz", 9, &good)).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = check_file(dir.path(), &entry("data/g.lp.gz", 3, &good)).unwrap_err();
        assert!(e.contains("data/g.lp.gz is missing"), "{e}");
        let e = check_file(dir.path(), &entry("../x", 3, &good)).unwrap_err();
        assert!(e.contains("outside"), "{e}");
    }
}
