//! `admin backup`: writes a node's data as gzip line-protocol files, one per
//! database, retention policy, measurement and window (the pieces of
//! [`super::pieces`]), under `DIR/data/`, and `DIR/manifest.json`: the
//! databases with their retention policies and continuous queries, each
//! file's point count, size and sha256, the time range and the tool
//! version. Finished files are recorded in `DIR/backup.state`, so an
//! interrupted backup run again into the same DIR resumes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;

use super::endpoint::{self, Allow};
use super::http::HttpClient;
use super::influx::Influx;
use super::ledger::{FileLedger, Ledger};
use super::lines::Encoder;
use super::pieces::{self, Piece, ScopeArgs, Selection};
use super::progress::{Display, Progress};
use super::schema::{self, Database, Scope};
use super::time::format_time;
use super::ControlError;

/// The manifest's name in a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The ledger's name in a backup directory.
const STATE: &str = "backup.state";
/// What the manifest's `format` says.
pub const FORMAT: u32 = 1;

/// The arguments of `admin backup`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BackupArgs {
    /// The node to back up: a node URL (http://user:pass@host:port) or CLUSTER/NODE
    #[arg(long, value_name = "SRC")]
    pub from: String,
    /// The backup directory (created; an interrupted backup into it resumes)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// What to read: databases, retention policy, measurements, time range
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Forget which files an interrupted backup into DIR finished and write them all again
    #[arg(long)]
    pub restart: bool,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tool: String,
    pub created: String,
    pub source: String,
    /// RFC 3339, or `-inf`/`+inf` for an open end.
    pub start: String,
    pub end: String,
    pub databases: Vec<Database>,
    pub files: Vec<FileEntry>,
    pub points: u64,
}

/// One data file of a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the backup directory.
    pub path: String,
    pub db: String,
    pub rp: String,
    pub measurement: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub points: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// What a backup did.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub manifest: PathBuf,
    pub files: usize,
    pub summary: String,
}

/// Runs `admin backup`.
pub async fn run(
    config: &Config,
    args: &BackupArgs,
    display: Display,
) -> Result<BackupReport, ControlError> {
    let selection = args.scope.selection()?;
    let src = endpoint::resolve(&args.from, config, Allow::Node)
        .await?
        .remove(0);
    let http = HttpClient::new().map_err(ControlError::Failed)?;
    let src = Influx::new(src, http);
    std::fs::create_dir_all(args.out.join("data"))
        .map_err(|e| ControlError::Failed(format!("cannot create {}: {e}", args.out.display())))?;
    let work = format!(
        "backup of {} db={:?} rp={:?} measurement={:?} range={}",
        src.endpoint.base,
        args.scope.databases,
        args.scope.rp,
        args.scope.measurement,
        selection.range
    );
    let state = args.out.join(STATE);
    if args.restart {
        super::ledger::forget(&state)?;
    }
    let mut ledger = FileLedger::open(&state, &work)?;
    backup(
        &src,
        &args.out,
        &args.scope.databases,
        &selection,
        &mut ledger,
        display,
    )
    .await
}

/// The backup itself, for the command and the job alike.
pub async fn backup(
    src: &Influx,
    dir: &Path,
    databases: &[String],
    selection: &Selection,
    ledger: &mut dyn Ledger,
    display: Display,
) -> Result<BackupReport, ControlError> {
    let mut schema = schema::read(src, databases, Scope::Everything).await?;
    schema::check_rp(&schema, selection.rp.as_deref(), src)?;
    if let Some(rp) = &selection.rp {
        for db in &mut schema.databases {
            db.retention_policies.retain(|p| p.name == *rp || p.default);
        }
    }
    let pieces = pieces::list(src, &schema.databases, selection).await?;
    let mut progress = Progress::new("backup", pieces.len() as u64, display);
    for piece in &pieces {
        let key = piece.key();
        if ledger.done(&key).is_some() {
            progress.piece_done(true);
            continue;
        }
        let entry = write_piece(src, dir, piece, &mut progress).await?;
        let detail = serde_json::to_value(&entry).unwrap_or_default();
        ledger.record(&key, detail)?;
        progress.piece_done(false);
    }
    let mut files: Vec<FileEntry> = ledger
        .finished()
        .into_iter()
        .filter_map(|(_, detail)| {
            serde_json::from_value::<Option<FileEntry>>(detail)
                .ok()
                .flatten()
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        format: FORMAT,
        tool: format!("influxdb-router {}", env!("CARGO_PKG_VERSION")),
        created: format_time(i64::try_from(crate::clock::unix_ns()).unwrap_or(i64::MAX)),
        source: src.label().to_string(),
        start: format_time(selection.range.start),
        end: format_time(selection.range.end),
        points: files.iter().map(|f| f.points).sum(),
        databases: schema.databases,
        files,
    };
    let path = dir.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ControlError::Failed(format!("cannot encode the manifest: {e}")))?;
    write_atomically(&path, &text)
        .map_err(|e| ControlError::Failed(format!("cannot write {}: {e}", path.display())))?;
    let summary = format!(
        "{}; {} files, manifest {}",
        progress.finish(),
        manifest.files.len(),
        path.display()
    );
    Ok(BackupReport {
        manifest: path,
        files: manifest.files.len(),
        summary,
    })
}

/// Bytes that stay as they are in file names; everything else is %XX.
const NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// `data/<db>/<rp>/<measurement>/<start>_<end>.lp.gz`, names percent-encoded.
fn relative_path(piece: &Piece) -> String {
    let enc = |s: &str| utf8_percent_encode(s, NAME).to_string();
    format!(
        "data/{}/{}/{}/{}_{}.lp.gz",
        enc(&piece.db),
        enc(&piece.rp),
        enc(&piece.measurement),
        piece.window.start,
        piece.window.end
    )
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one piece's file; `None` (and no file) when the piece holds no points.
async fn write_piece(
    src: &Influx,
    dir: &Path,
    piece: &Piece,
    progress: &mut Progress,
) -> Result<Option<FileEntry>, ControlError> {
    let relative = relative_path(piece);
    let path = dir.join(&relative);
    let temporary = path.with_extension("gz.partial");
    let io = |what: &str, e: std::io::Error| {
        ControlError::Failed(format!(
            "{piece}: cannot {what} {}: {e}",
            temporary.display()
        ))
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("create the directory of", e))?;
    }
    let file = File::create(&temporary).map_err(|e| io("create", e))?;
    let hashing = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut gz = GzEncoder::new(hashing, flate2::Compression::fast());
    let mut stream = src.stream(&piece.db, &piece.select()).await?;
    let mut encoder = Encoder::new();
    while stream.next_chunk(&mut encoder).await? {
        let points = encoder.points() as u64;
        let batch = encoder.take();
        gz.write_all(&batch).map_err(|e| io("write", e))?;
        progress.add(points, batch.len() as u64);
    }
    let points = encoder.total_points;
    let hashing = gz.finish().map_err(|e| io("write", e))?;
    let Hashing { inner, hash, bytes } = hashing;
    let file = inner
        .into_inner()
        .map_err(|e| io("write", e.into_error()))?;
    if points == 0 {
        drop(file);
        let _ = std::fs::remove_file(&temporary);
        return Ok(None);
    }
    file.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&temporary, &path).map_err(|e| io("rename", e))?;
    Ok(Some(FileEntry {
        path: relative,
        db: piece.db.clone(),
        rp: piece.rp.clone(),
        measurement: piece.measurement.clone(),
        start_ns: piece.window.start,
        end_ns: piece.window.end,
        points,
        bytes,
        sha256: hex(&hash.finalize()),
    }))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("json.partial");
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::time::Range;

    #[test]
    fn file_names_are_safe_for_any_name() {
        let piece = Piece {
            db: "../etc".into(),
            rp: "a/b".into(),
            measurement: "we ird,m é".into(),
            window: Range { start: -5, end: 10 },
        };
        assert_eq!(
            relative_path(&piece),
            "data/%2E%2E%2Fetc/a%2Fb/we%20ird%2Cm%20%C3%A9/-5_10.lp.gz"
        );
    }
}
