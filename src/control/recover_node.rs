//! `admin recover-node --cluster C --node N [--from-backup DIR] [--from NODE]`:
//! brings an empty or stale replica back without a moment of wrong reads.
//!
//! 1. The node and a source replica are resolved through the routing table
//!    in force (`--from`, else the first read-write node of C, other than N
//!    and without an override, that answers `/ping`). Overrides live in
//!    Redis, so `[routing] redis_url` must reach it (else exit 2).
//!    sync-schema from the source to N comes first: routers dead-letter a
//!    write that a node refuses (a wiped node answers "database not
//!    found"), so the databases must exist on N before T0, after which
//!    nothing is copied.
//! 2. N is made `write-only` by an override in Redis (an override that is
//!    there already, say from `[control] auto_recover`, is kept, and its
//!    `since_ns` is T0); then every live router's receipt must show it
//!    applied ([`super::receipts`]; routers that lag are named in a warning).
//!    N keeps taking live writes (through its durable queue too) and answers
//!    no reads.
//! 3. With `--from-backup DIR`, the backup is restored into N
//!    ([`super::restore::restore`]) and B is its time cover (the manifest's
//!    range end, or the time it was taken when the range is open).
//! 4. (sync-schema: done first, see 1.)
//! 5. The live copy from the source: `[B, T0)` (with a backup; databases
//!    the backup does not hold, and time before a backup's range start, are
//!    copied whole up to T0), else all time before T0; then a comparison of
//!    all time before T0 with repair rounds ([`super::converge::settle`]),
//!    which also fills what the backup missed (points written while it ran).
//!    The ranges copied are in the report, the ledger and a job's record.
//! 6. Only when the comparison is clean: the override is removed, the
//!    receipts waited for again and `P:recover:C/N` deleted; N serves reads.
//!    Differences leave the override in place (exit 1, listing them).
//!
//! Each step is recorded in the ledger (a job's in Redis, else a state file
//! under `[buffer] dir`), with the restore's files and the copy's pieces, so
//! running the same command again resumes at the first unfinished step with
//! the same T0. A state file is removed once the node serves reads again: a
//! later recovery of the same node starts afresh.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, NodeMode};
use crate::routing::overrides::{Override, Receipt};

use super::backup::Manifest;
use super::converge::{self, REPAIR_ROUNDS};
use super::endpoint::{self, Allow, Endpoint, Member};
use super::http::HttpClient;
use super::influx::Influx;
use super::ledger::{self, Ledger, Prefixed};
use super::overrides::OverrideStore;
use super::pieces::Selection;
use super::progress::{thousands, Display};
use super::receipts::{self, Receipts};
use super::restore;
use super::schema::{self, Passwords};
use super::sync_schema;
use super::time::{format_time, parse_time, Range, MAX_TIME, MIN_TIME};
use super::{backfill, ControlError};

/// The mode the override gives the node while it recovers.
pub const MODE: &str = "write-only";
/// The `reason` of the override this command sets.
pub const REASON: &str = "recover-node";

/// How long `/ping` of a candidate source may take.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The arguments of `admin recover-node` (and of the job kind).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RecoverNodeArgs {
    /// The cluster of the node
    #[arg(long, value_name = "CLUSTER")]
    pub cluster: String,
    /// The node to recover (its name in the cluster)
    #[arg(long, value_name = "NODE")]
    pub node: String,
    /// Restore this backup (made by `admin backup` of a replica) first; only the time since is copied live
    #[arg(long, value_name = "DIR")]
    pub from_backup: Option<PathBuf>,
    /// The replica to copy from: a node of the cluster, CLUSTER/NODE or a URL (default: the first healthy read-write one)
    #[arg(long, value_name = "NODE")]
    pub from: Option<String>,
    /// The file recording finished steps (default: under [buffer] dir, named after the arguments)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Forget what the state file records and start over
    #[arg(long)]
    pub restart: bool,
}

/// One live copy: the databases (empty: every one of the source) and the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub databases: Vec<String>,
    pub range: Range,
}

impl Copy {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "databases": self.databases,
            "start_ns": self.range.start,
            "end_ns": self.range.end,
            "start": format_time(self.range.start),
            "end": format_time(self.range.end),
        })
    }

    fn from_json(value: &serde_json::Value) -> Option<Copy> {
        Some(Copy {
            databases: value
                .get("databases")?
                .as_array()?
                .iter()
                .filter_map(|d| d.as_str().map(String::from))
                .collect(),
            range: Range {
                start: value.get("start_ns")?.as_i64()?,
                end: value.get("end_ns")?.as_i64()?,
            },
        })
    }
}

impl std::fmt::Display for Copy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.databases.is_empty() {
            write!(f, "{}", self.range)
        } else {
            write!(f, "{} of {}", self.range, self.databases.join(","))
        }
    }
}

/// What a recover-node did (or found).
#[derive(Debug, Clone, Default)]
pub struct RecoverReport {
    /// `cluster/node`.
    pub node: String,
    /// The replica copied from.
    pub source: String,
    /// When the node became write-only (T0), Unix ns.
    pub since_ns: i64,
    /// The backup's time cover (B), with `--from-backup`.
    pub backup_cover_ns: Option<i64>,
    /// The live copies, in order.
    pub copied: Vec<Copy>,
    /// The range compared with the source.
    pub verified: Option<Range>,
    /// Whether the comparison found N equal to the source.
    pub clean: bool,
    /// The differences left, when not clean.
    pub differences: String,
    /// Pieces copied again by the repair rounds.
    pub repaired: u64,
    /// One line per step, as it went.
    pub steps: Vec<String>,
    /// Routers that lagged, notices not published.
    pub warnings: Vec<String>,
    /// The state file, when one was used (removed on success).
    pub state_file: Option<PathBuf>,
}

impl RecoverReport {
    /// The steps, the warnings and the summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            out.push_str(step);
            out.push('\n');
        }
        for warning in &self.warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        if !self.clean && !self.differences.is_empty() {
            out.push_str(&self.differences);
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// One line: the node, T0, the ranges copied, the outcome.
    pub fn summary(&self) -> String {
        let copied: Vec<String> = self.copied.iter().map(Copy::to_string).collect();
        let backup = match self.backup_cover_ns {
            Some(b) => format!("restored backup covering up to {}; ", format_time(b)),
            None => String::new(),
        };
        let outcome = if self.clean {
            "verify clean, override removed: it serves reads"
        } else {
            "verify found differences: the node stays write-only"
        };
        format!(
            "recover-node {}: write-only since {}; {backup}copied live from {}: {}; {} piece(s) \
             repaired; {outcome}",
            self.node,
            format_time(self.since_ns),
            self.source,
            if copied.is_empty() {
                "nothing".to_string()
            } else {
                copied.join(", ")
            },
            self.repaired
        )
    }

    /// The ranges as JSON (a job's record keeps this as `ranges`).
    pub fn ranges_json(&self) -> serde_json::Value {
        serde_json::json!({
            "since_ns": self.since_ns,
            "since": format_time(self.since_ns),
            "backup_cover_ns": self.backup_cover_ns,
            "backup_cover": self.backup_cover_ns.map(format_time),
            "copied": self.copied.iter().map(Copy::json).collect::<Vec<_>>(),
            "verified": self.verified.map(|r| serde_json::json!({
                "start_ns": r.start,
                "end_ns": r.end,
                "start": format_time(r.start),
                "end": format_time(r.end),
            })),
            "repaired": self.repaired,
            "clean": self.clean,
        })
    }

    /// `Err` with the differences when verify was not clean.
    pub fn outcome(&self) -> Result<(), ControlError> {
        if self.clean {
            return Ok(());
        }
        Err(ControlError::Failed(format!(
            "recover-node {}: verify still finds differences; the override stays (the node \
             takes writes, answers no reads); run the same command again once the cause is \
             fixed:\n{}",
            self.node, self.differences
        )))
    }
}

/// The ledger's names of the steps.
mod step {
    pub const OVERRIDE: &str = "step:override";
    pub const RESTORE: &str = "step:restore";
    pub const SCHEMA: &str = "step:schema";
    pub const COPY: &str = "step:copy";
    pub const VERIFY: &str = "step:verify";
    pub const RELEASE: &str = "step:release";
}

/// Runs `admin recover-node`: steps go to `ledger` when given (a job's),
/// else to the state file. A verify that stays different is an `Ok` report
/// that is not clean (see [`RecoverReport::outcome`]).
pub async fn run(
    config: &Config,
    args: &RecoverNodeArgs,
    display: Display,
    ledger: Option<&mut dyn Ledger>,
) -> Result<RecoverReport, ControlError> {
    if args.cluster.is_empty() || args.node.is_empty() {
        return Err(ControlError::Usage(
            "recover-node needs --cluster and --node".into(),
        ));
    }
    let store = OverrideStore::connect(config, "recover-node").await?;
    let members = endpoint::cluster_members(config, &args.cluster).await?;
    let target = members
        .iter()
        .find(|m| m.name == args.node)
        .ok_or_else(|| {
            let known: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            ControlError::Failed(format!(
                "unknown node {:?} in cluster {:?} (it has: {})",
                args.node,
                args.cluster,
                known.join(", ")
            ))
        })?;
    if !target.mode.accepts_writes() {
        return Err(ControlError::Failed(format!(
            "{} is {:?} in the routing table and takes no writes: recover-node makes a node \
             that takes live writes whole (set its mode to read-write or write-only first)",
            target.endpoint.label, target.mode
        )));
    }
    let manifest = args
        .from_backup
        .as_deref()
        .map(restore::read_manifest)
        .transpose()?;
    let work = format!(
        "recover-node of {} at {} from_backup={:?} from={:?}",
        target.endpoint.label, target.endpoint.base, args.from_backup, args.from
    );
    let mut file_ledger = None;
    let ledger = ledger::given_or_file(
        ledger,
        &mut file_ledger,
        args.state.as_deref(),
        args.restart,
        &config.buffer.dir,
        "recover-node",
        &work,
    )?;
    let http = HttpClient::new().map_err(ControlError::Failed)?;
    let node = Influx::new(target.endpoint.clone(), http.clone());
    let overrides = store.all().await?;
    let source = choose_source(config, args, &members, target, &overrides, &http).await?;
    let source = Influx::new(source, http);
    let mut report = RecoverReport {
        node: target.endpoint.label.clone(),
        source: source.label().to_string(),
        ..RecoverReport::default()
    };
    let poll = config.routing.poll_interval;
    let timeout = receipts::default_timeout(poll);

    // the schema first: from here on live writes find their databases on N
    // (a router dead-letters a write a node refuses with 4xx, it does not
    // retry it), and what N refused until now is older than T0, so copied
    if ledger.done(step::SCHEMA).is_none() {
        let synced = sync_schema::sync(
            &source,
            std::slice::from_ref(&node),
            &[],
            &Passwords::default(),
            false,
        )
        .await?;
        let skipped: Vec<String> = synced
            .nodes
            .iter()
            .flat_map(|(_, plan)| plan.skipped.iter().cloned())
            .collect();
        ledger.record(
            step::SCHEMA,
            serde_json::json!({ "statements": synced.statements(), "skipped": skipped }),
        )?;
        report.steps.push(format!(
            "sync-schema from {}: {} statement(s) run{}",
            report.source,
            synced.statements(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" (skipped: {})", skipped.join("; "))
            }
        ));
    }

    // 2. write-only, and every router knows
    let t0 = write_only(&store, args, ledger, poll, timeout, &mut report).await?;
    report.since_ns = t0;

    // 3. the backup
    if let (Some(dir), Some(manifest)) = (&args.from_backup, &manifest) {
        let mut cover = None;
        if let Some(done) = ledger.done(step::RESTORE) {
            cover = done.get("cover_ns").and_then(|v| v.as_i64());
            report
                .steps
                .push(format!("restore of {}: done earlier", dir.display()));
        }
        let cover = match cover {
            Some(c) => c,
            None => {
                let b = backup_cover(manifest)?;
                let databases = restore::choose(manifest, None, None)?;
                let restored = restore::restore(
                    dir,
                    manifest,
                    &databases,
                    None,
                    vec![node.clone()],
                    &mut Prefixed::new(ledger, "restore:"),
                    display.clone(),
                )
                .await?;
                restored.outcome()?;
                ledger.record(
                    step::RESTORE,
                    serde_json::json!({ "cover_ns": b, "summary": restored.summary }),
                )?;
                report.steps.push(format!(
                    "restored {} into {}: {}",
                    dir.display(),
                    report.node,
                    restored.summary
                ));
                b
            }
        };
        report.backup_cover_ns = Some(cover);
    }

    // 5. the live copy, then verify and repair everything before T0
    let copies = match ledger.done(step::COPY) {
        Some(done) => {
            let copies: Vec<Copy> = done
                .get("copied")
                .and_then(|c| c.as_array())
                .map(|a| a.iter().filter_map(Copy::from_json).collect())
                .unwrap_or_default();
            report.steps.push(format!(
                "live copy: done earlier ({})",
                copies
                    .iter()
                    .map(Copy::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            copies
        }
        None => {
            let copies =
                plan_copies(&source, t0, manifest.as_ref(), report.backup_cover_ns).await?;
            let mut points = 0;
            for copy in &copies {
                let selection = Selection {
                    rp: None,
                    measurement: None,
                    range: copy.range,
                    window: None,
                };
                let copied = backfill::copy(
                    &source,
                    vec![node.clone()],
                    &copy.databases,
                    &selection,
                    &mut Prefixed::new(ledger, "copy:"),
                    display.clone(),
                )
                .await?;
                copied.outcome()?;
                points += copied.points;
                report.steps.push(format!(
                    "copied {copy} from {}: {}",
                    report.source, copied.summary
                ));
            }
            ledger.record(
                step::COPY,
                serde_json::json!({
                    "copied": copies.iter().map(Copy::json).collect::<Vec<_>>(),
                    "points": points,
                }),
            )?;
            copies
        }
    };
    report.copied = copies;
    let verified = Range {
        start: MIN_TIME,
        end: t0,
    };
    report.verified = Some(verified);
    match ledger.done(step::VERIFY) {
        Some(done) => {
            report.repaired = done.get("repaired").and_then(|v| v.as_u64()).unwrap_or(0);
            report.steps.push("verify: clean earlier".into());
        }
        None => {
            let selection = Selection {
                rp: None,
                measurement: None,
                range: verified,
                window: None,
            };
            let settled = converge::settle(
                &source,
                std::slice::from_ref(&node),
                &[],
                &selection,
                REPAIR_ROUNDS,
            )
            .await?;
            report.repaired = settled.repaired;
            let points = settled.verified.first().map_or(0, |v| v.dst_points);
            if !settled.equal() {
                report.differences = settled.differences();
                report.steps.push(format!(
                    "verify of {verified} against {}: still different after {REPAIR_ROUNDS} \
                     repair round(s)",
                    report.source
                ));
                report.state_file = file_ledger.as_ref().map(|l| l.path().to_path_buf());
                return Ok(report);
            }
            ledger.record(
                step::VERIFY,
                serde_json::json!({ "repaired": settled.repaired, "points": points }),
            )?;
            report.steps.push(format!(
                "verify of {verified} against {}: equal, {} points, {} piece(s) repaired",
                report.source,
                thousands(points),
                settled.repaired
            ));
        }
    }
    report.clean = true;

    // 6. reads again
    if ledger.done(step::RELEASE).is_none() {
        release(&store, args, ledger, poll, timeout, &mut report).await?;
    }
    if let Some(file) = file_ledger {
        let path = file.path().to_path_buf();
        drop(file);
        ledger::forget(&path)?;
    }
    Ok(report)
}

/// Step 2: the override (set or kept), recorded with T0; then the receipts.
async fn write_only(
    store: &OverrideStore,
    args: &RecoverNodeArgs,
    ledger: &mut dyn Ledger,
    poll: Duration,
    timeout: Duration,
    report: &mut RecoverReport,
) -> Result<i64, ControlError> {
    let recorded = ledger
        .done(step::OVERRIDE)
        .and_then(|d| d.get("since_ns"))
        .and_then(|v| v.as_i64());
    let now = i64::try_from(crate::clock::unix_ns()).unwrap_or(i64::MAX);
    let wanted = Override {
        mode: MODE.into(),
        since_ns: recorded.unwrap_or(now),
        reason: REASON.into(),
    };
    let changed = store
        .set_unless_present(&args.cluster, &args.node, &wanted)
        .await?;
    let current = changed.current.clone().ok_or_else(|| {
        ControlError::Failed(format!(
            "the override of {}/{} vanished right after it was set; run the command again",
            args.cluster, args.node
        ))
    })?;
    if current.node_mode() != Some(NodeMode::WriteOnly) {
        return Err(ControlError::Failed(format!(
            "{}/{} has an override of mode {:?} (reason {:?}); recover-node needs it write-only: \
             remove that override first",
            args.cluster, args.node, current.mode, current.reason
        )));
    }
    let t0 = recorded.unwrap_or(current.since_ns);
    if recorded.is_none() {
        ledger.record(
            step::OVERRIDE,
            serde_json::json!({ "since_ns": t0, "version": changed.version }),
        )?;
    }
    report.steps.push(if changed.changed {
        format!(
            "{}/{} is write-only since {} (override version {})",
            args.cluster,
            args.node,
            format_time(t0),
            changed.version
        )
    } else {
        format!(
            "{}/{} was write-only already since {} (reason {:?}); kept",
            args.cluster,
            args.node,
            format_time(current.since_ns),
            current.reason
        )
    });
    report.warnings.extend(changed.notice_warning);
    let version = changed.version;
    let found = receipts::wait_for_receipts(
        store.connection(),
        &store.prefix,
        poll,
        timeout,
        move |r: &Receipt| r.overrides_version >= version,
    )
    .await?;
    note_receipts(report, &found, &format!("overrides version {version}"));
    Ok(t0)
}

/// Step 6: the override removed, and the receipts for that.
async fn release(
    store: &OverrideStore,
    args: &RecoverNodeArgs,
    ledger: &mut dyn Ledger,
    poll: Duration,
    timeout: Duration,
    report: &mut RecoverReport,
) -> Result<(), ControlError> {
    let changed = store
        .remove_if_mode(&args.cluster, &args.node, MODE)
        .await?;
    report.warnings.extend(changed.notice_warning.clone());
    if let Some(other) = &changed.current {
        report.warnings.push(format!(
            "{}/{} now has an override of mode {:?} (reason {:?}) set by someone else; left alone",
            args.cluster, args.node, other.mode, other.reason
        ));
    }
    let version = changed.version;
    let found = receipts::wait_for_receipts(
        store.connection(),
        &store.prefix,
        poll,
        timeout,
        move |r: &Receipt| r.overrides_version >= version,
    )
    .await?;
    note_receipts(
        report,
        &found,
        &format!("the removal (overrides version {version})"),
    );
    // the auto_recover key stays until it expires: a node that flaps after
    // its recovery must not get another job per flap
    ledger.record(step::RELEASE, serde_json::json!({ "version": version }))?;
    report.steps.push(format!(
        "{}/{}: override removed (version {version}); it serves reads",
        args.cluster, args.node
    ));
    Ok(())
}

fn note_receipts(report: &mut RecoverReport, found: &Receipts, what: &str) {
    report
        .steps
        .push(format!("receipts for {what}: {}", found.summary()));
    report.warnings.extend(found.warning(what));
}

/// The replica to copy from: `--from`, else the first read-write member of
/// the cluster other than the node, without an override, answering `/ping`.
async fn choose_source(
    config: &Config,
    args: &RecoverNodeArgs,
    members: &[Member],
    target: &Member,
    overrides: &crate::routing::overrides::Overrides,
    http: &HttpClient,
) -> Result<Endpoint, ControlError> {
    if let Some(spec) = &args.from {
        let chosen = if spec.contains("://") || spec.contains('/') {
            endpoint::resolve(spec, config, Allow::Node)
                .await?
                .remove(0)
        } else {
            members
                .iter()
                .find(|m| m.name == *spec)
                .map(|m| m.endpoint.clone())
                .ok_or_else(|| {
                    ControlError::Failed(format!(
                        "--from {spec:?}: no such node in cluster {:?}",
                        args.cluster
                    ))
                })?
        };
        if chosen.base == target.endpoint.base {
            return Err(ControlError::Usage(format!(
                "--from {spec:?} is the node being recovered"
            )));
        }
        ping(http, &chosen)
            .await
            .map_err(|why| ControlError::Failed(format!("--from {}: {why}", chosen.label)))?;
        return Ok(chosen);
    }
    let mut passed = Vec::new();
    for member in members {
        if member.name == target.name || member.endpoint.base == target.endpoint.base {
            continue;
        }
        if member.mode != NodeMode::ReadWrite {
            passed.push(format!("{} is {:?}", member.name, member.mode));
            continue;
        }
        if let Some(o) = overrides.get(&(args.cluster.clone(), member.name.clone())) {
            if o.node_mode() != Some(NodeMode::ReadWrite) {
                passed.push(format!(
                    "{} has a {} override ({})",
                    member.name, o.mode, o.reason
                ));
                continue;
            }
        }
        match ping(http, &member.endpoint).await {
            Ok(()) => return Ok(member.endpoint.clone()),
            Err(why) => passed.push(format!("{}: {why}", member.name)),
        }
    }
    Err(ControlError::Failed(format!(
        "cluster {:?} has no healthy read-write replica besides {} to copy from ({}); name one \
         with --from",
        args.cluster,
        args.node,
        if passed.is_empty() {
            "it has no other node".to_string()
        } else {
            passed.join("; ")
        }
    )))
}

async fn ping(http: &HttpClient, endpoint: &Endpoint) -> Result<(), String> {
    match http
        .get(&format!("{}/ping", endpoint.base), PING_TIMEOUT)
        .await
    {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, _)) => Err(format!("/ping answered {status}")),
        Err(e) => Err(format!("/ping failed: {e}")),
    }
}

/// B: the end of the backup's range, or when it was taken when that is
/// open (the earlier of the two when both are known).
pub fn backup_cover(manifest: &Manifest) -> Result<i64, ControlError> {
    let created = parse_time(&manifest.created).map_err(|e| {
        ControlError::Failed(format!(
            "the backup manifest's creation time {:?} is not a time: {e}",
            manifest.created
        ))
    })?;
    Ok(match parse_time(&manifest.end) {
        Ok(end) if end < MAX_TIME => end.min(created),
        _ => created,
    })
}

/// The live copies up to `t0`: everything, or with a backup covering up
/// to `cover`, `[cover, t0)` of its databases (and the time before its
/// range start), and all of the source's other databases.
async fn plan_copies(
    source: &Influx,
    t0: i64,
    manifest: Option<&Manifest>,
    cover: Option<i64>,
) -> Result<Vec<Copy>, ControlError> {
    let (Some(manifest), Some(cover)) = (manifest, cover) else {
        return Ok(vec![Copy {
            databases: Vec::new(),
            range: Range {
                start: MIN_TIME,
                end: t0,
            },
        }]);
    };
    let on_source = schema::database_names(source).await?;
    let on_source: Vec<String> = on_source.into_iter().filter(|d| d != "_internal").collect();
    let mut backed_up: Vec<String> = manifest
        .databases
        .iter()
        .map(|d| d.name.clone())
        .filter(|d| on_source.contains(d))
        .collect();
    backed_up.sort();
    let others: Vec<String> = on_source
        .iter()
        .filter(|d| !backed_up.contains(d))
        .cloned()
        .collect();
    let mut copies = Vec::new();
    let push = |copies: &mut Vec<Copy>, databases: &[String], start: i64, end: i64| {
        if !databases.is_empty() && start < end {
            copies.push(Copy {
                databases: databases.to_vec(),
                range: Range { start, end },
            });
        }
    };
    if let Ok(start) = parse_time(&manifest.start) {
        if start > MIN_TIME {
            push(&mut copies, &backed_up, MIN_TIME, start.min(t0));
        }
    }
    push(&mut copies, &backed_up, cover, t0);
    push(&mut copies, &others, MIN_TIME, t0);
    Ok(copies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(start: &str, end: &str, created: &str) -> Manifest {
        Manifest {
            format: super::super::backup::FORMAT,
            tool: String::new(),
            created: created.into(),
            source: String::new(),
            start: start.into(),
            end: end.into(),
            databases: vec![],
            files: vec![],
            points: 0,
        }
    }

    #[test]
    fn the_cover_is_the_range_end_or_the_time_taken() {
        let taken = "2024-05-01T12:00:00Z";
        let at = parse_time(taken).unwrap();
        assert_eq!(backup_cover(&manifest("-inf", "+inf", taken)).unwrap(), at);
        let end = "2024-04-01T00:00:00Z";
        assert_eq!(
            backup_cover(&manifest("-inf", end, taken)).unwrap(),
            parse_time(end).unwrap()
        );
        // a range end after the backup was taken covers only up to then
        assert_eq!(
            backup_cover(&manifest("-inf", "2030-01-01T00:00:00Z", taken)).unwrap(),
            at
        );
        assert!(backup_cover(&manifest("-inf", "+inf", "yesterday")).is_err());
    }

    #[test]
    fn reports_name_the_ranges() {
        let report = RecoverReport {
            node: "main/b".into(),
            source: "main/a".into(),
            since_ns: 2_000_000_000,
            backup_cover_ns: Some(1_000_000_000),
            copied: vec![Copy {
                databases: vec!["db".into()],
                range: Range {
                    start: 1_000_000_000,
                    end: 2_000_000_000,
                },
            }],
            clean: false,
            differences: "DIFFERS x".into(),
            ..RecoverReport::default()
        };
        let summary = report.summary();
        assert!(
            summary.contains("[1970-01-01T00:00:01Z, 1970-01-01T00:00:02Z) of db"),
            "{summary}"
        );
        assert!(summary.contains("stays write-only"), "{summary}");
        let json = report.ranges_json();
        assert_eq!(json["copied"][0]["start_ns"], 1_000_000_000);
        assert_eq!(
            Copy::from_json(&json["copied"][0]).unwrap(),
            report.copied[0]
        );
        match report.outcome() {
            Err(ControlError::Failed(m)) => assert!(m.contains("DIFFERS x"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
