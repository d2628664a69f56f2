//! `admin backfill`: an exact copy of points from one node to another node
//! or to every write-enabled node of a cluster, piece by piece (see
//! [`super::pieces`]), streaming: each piece is read as a chunked answer and
//! written in batches of a few thousand lines while the next chunk arrives,
//! so memory stays flat whatever the size. Finished pieces go to a
//! [`Ledger`], so running the same command again resumes.

use std::path::PathBuf;

use bytes::Bytes;

use crate::config::Config;

use super::endpoint::{self, Allow};
use super::http::HttpClient;
use super::influx::Influx;
use super::ledger::{self, Ledger};
use super::lines::Encoder;
use super::pieces::{self, Piece, ScopeArgs, Selection};
use super::progress::{Display, Progress};
use super::schema::{self, Scope};
use super::writer::Writers;
use super::ControlError;

/// Points per write batch.
pub const BATCH_POINTS: usize = 5000;

/// The arguments of `admin backfill`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BackfillArgs {
    /// Where the points come from: a node URL (http://user:pass@host:port) or CLUSTER/NODE
    #[arg(long, value_name = "SRC")]
    pub from: String,
    /// Where they go: a node URL, CLUSTER/NODE, or CLUSTER (every write-enabled node of it)
    #[arg(long, value_name = "DST")]
    pub to: String,
    /// What to read: databases, retention policy, measurements, time range
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// The file recording finished pieces (default: under [buffer] dir, named after the arguments)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Forget what the state file records and start over
    #[arg(long)]
    pub restart: bool,
}

/// What a backfill did.
#[derive(Debug, Clone, Default)]
pub struct BackfillReport {
    pub points: u64,
    pub bytes: u64,
    pub pieces: u64,
    pub pieces_skipped: u64,
    pub schema_statements: usize,
    /// Destination nodes that dropped out, with why.
    pub failed_nodes: Vec<String>,
    pub summary: String,
    pub state_file: Option<PathBuf>,
}

impl BackfillReport {
    /// `Err` naming the destination nodes that dropped out, if any did.
    pub fn outcome(&self) -> Result<(), ControlError> {
        super::nodes_dropped_out(
            "backfill",
            &self.failed_nodes,
            "the other nodes got everything",
        )
    }
}

/// Runs `admin backfill`: finished pieces go to `ledger` when given (a
/// job's, in Redis), else to the state file.
pub async fn run(
    config: &Config,
    args: &BackfillArgs,
    display: Display,
    ledger: Option<&mut dyn Ledger>,
) -> Result<BackfillReport, ControlError> {
    let selection = args.scope.selection()?;
    let src = endpoint::resolve(&args.from, config, Allow::Node)
        .await?
        .remove(0);
    let dst = endpoint::resolve(&args.to, config, Allow::NodeOrCluster).await?;
    let work = format!(
        "backfill from {} to {} db={:?} rp={:?} measurement={:?} range={}",
        src.base,
        dst.iter()
            .map(|d| d.base.as_str())
            .collect::<Vec<_>>()
            .join(","),
        args.scope.databases,
        args.scope.rp,
        args.scope.measurement,
        selection.range
    );
    let mut file_ledger = None;
    let ledger = ledger::given_or_file(
        ledger,
        &mut file_ledger,
        args.state.as_deref(),
        args.restart,
        &config.buffer.dir,
        "backfill",
        &work,
    )?;
    let http = HttpClient::new().map_err(ControlError::Failed)?;
    let src = Influx::new(src, http.clone());
    let dst: Vec<Influx> = dst
        .into_iter()
        .map(|e| Influx::new(e, http.clone()))
        .collect();
    let mut report = copy(
        &src,
        dst,
        &args.scope.databases,
        &selection,
        ledger,
        display,
    )
    .await?;
    report.state_file = file_ledger.map(|l| l.path().to_path_buf());
    Ok(report)
}

/// The copy itself, for the command and the job alike.
pub async fn copy(
    src: &Influx,
    dst: Vec<Influx>,
    databases: &[String],
    selection: &Selection,
    ledger: &mut dyn Ledger,
    display: Display,
) -> Result<BackfillReport, ControlError> {
    let schema = schema::read(src, databases, Scope::Storage).await?;
    schema::check_rp(&schema, selection.rp.as_deref(), src)?;
    let mut schema_statements = 0;
    for node in &dst {
        schema_statements += schema::ensure_storage(&schema.databases, node).await?;
    }
    let pieces = pieces::list(src, &schema.databases, selection).await?;
    let mut progress = Progress::new("backfill", pieces.len() as u64, display);
    let mut writers = Writers::new(dst);
    for piece in &pieces {
        let key = piece.key();
        if ledger.done(&key).is_some() {
            progress.piece_done(true);
            continue;
        }
        let points = copy_piece(src, piece, &mut writers, &mut progress).await?;
        if !writers.any_failed() {
            ledger.record(&key, serde_json::json!({ "points": points }))?;
        }
        progress.piece_done(false);
    }
    writers.drain().await?;
    let summary = progress.finish();
    Ok(BackfillReport {
        points: progress.points,
        bytes: progress.bytes,
        pieces: progress.pieces_done,
        pieces_skipped: progress.pieces_skipped,
        schema_statements,
        failed_nodes: writers.failures(),
        summary,
        state_file: None,
    })
}

/// Copies one piece; returns its point count once every batch is written.
async fn copy_piece(
    src: &Influx,
    piece: &Piece,
    writers: &mut Writers,
    progress: &mut Progress,
) -> Result<u64, ControlError> {
    let mut stream = src.stream(&piece.db, &piece.select()).await?;
    let mut encoder = Encoder::new();
    loop {
        let more = stream.next_chunk(&mut encoder).await?;
        if encoder.points() >= BATCH_POINTS || (!more && !encoder.is_empty()) {
            let (points, batch) = (encoder.points() as u64, encoder.take());
            progress.add(points, batch.len() as u64);
            writers
                .send(&piece.db, &piece.rp, Bytes::from(batch))
                .await
                .map_err(|e| ControlError::Failed(format!("{piece}: {e}")))?;
        }
        if !more {
            break;
        }
    }
    writers
        .drain()
        .await
        .map_err(|e| ControlError::Failed(format!("{piece}: {e}")))?;
    Ok(encoder.total_points)
}
