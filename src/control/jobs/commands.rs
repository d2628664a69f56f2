//! `admin enqueue`, `admin jobs [ID]`, `admin jobs cancel ID`: putting jobs
//! on the queue and reading their records.

use std::io::IsTerminal;
use std::time::Duration;

use super::amqp::Jobs;
use super::store::{Record, Store};
use super::{new_id, JobCommand, JobMessage};
use crate::config::Config;
use crate::control::endpoint::redact;
use crate::control::progress::thousands;
use crate::control::time::format_time;
use crate::control::ControlError;

/// `admin enqueue` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EnqueueArgs {
    /// Wait for the job to end, showing its progress; exit with its result
    #[arg(long)]
    pub wait: bool,
    /// The job: a kind (sync-schema, backfill, verify, backup, restore,
    /// create-database) and the flags of the command of that name
    #[arg(
        value_name = "KIND [FLAGS]",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub job: Vec<String>,
}

/// `admin jobs` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub action: Option<JobsAction>,
    /// One job, in full
    #[arg(value_name = "ID")]
    pub id: Option<String>,
    /// Print one JSON document
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum JobsAction {
    /// Skip a queued job; stop a running one at its next heartbeat
    Cancel {
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// Checks the job as its command would (bad flags: exit 2, nothing queued),
/// records it, publishes it and returns its id (and whether to wait).
pub async fn enqueue(config: &Config, args: &EnqueueArgs) -> Result<(String, bool), ControlError> {
    let mut wait = args.wait;
    let mut words: Vec<String> = Vec::with_capacity(args.job.len());
    for word in &args.job {
        if word == "--wait" {
            wait = true;
        } else {
            words.push(word.clone());
        }
    }
    let Some((kind, flags)) = words.split_first() else {
        return Err(ControlError::Usage("enqueue needs a job kind".into()));
    };
    JobCommand::parse(kind, flags)?;
    let routing = &config.routing;
    let store = Store::connect(&routing.redis_url, &routing.key_prefix).await?;
    let jobs = Jobs::connect(&routing.amqp_url, &routing.key_prefix).await?;
    let message = JobMessage {
        id: new_id(),
        kind: kind.clone(),
        args: flags.to_vec(),
    };
    store.create(&message).await?;
    let published = jobs.publish(&message).await;
    jobs.close().await;
    if let Err(e) = published {
        let _ = store
            .set(
                &message.id,
                &[
                    ("state", "failed".into()),
                    ("error", format!("could not be queued: {e}")),
                ],
            )
            .await;
        return Err(e);
    }
    Ok((message.id, wait))
}

/// Follows job `id` until it ends: `Ok(summary)` when done, `Err(error)`
/// when it failed or was cancelled. Shows its progress meanwhile.
pub async fn wait(config: &Config, id: &str) -> Result<String, ControlError> {
    let routing = &config.routing;
    let store = Store::connect(&routing.redis_url, &routing.key_prefix).await?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "job {prefix} [{bar:30}] {pos}/{len} pieces, {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(id.to_string());
        bar
    });
    let mut last_line = std::time::Instant::now();
    loop {
        let record = store
            .get(id)
            .await?
            .ok_or_else(|| ControlError::Failed(format!("no job {id:?}")))?;
        let state = field(&record, "state");
        let progress: serde_json::Value =
            serde_json::from_str(field(&record, "progress")).unwrap_or_default();
        let counts = progress_text(&progress);
        if let Some(bar) = &bar {
            bar.set_length(progress["pieces_total"].as_u64().unwrap_or(0));
            bar.set_position(progress["pieces_done"].as_u64().unwrap_or(0));
            bar.set_message(format!("{state}, {counts}"));
        } else if last_line.elapsed() >= Duration::from_secs(5) {
            last_line = std::time::Instant::now();
            eprintln!("job {id}: {state}, {counts}");
        }
        match state {
            "done" => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                return Ok(field(&record, "summary").to_string());
            }
            "failed" | "cancelled" => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                let error = field(&record, "error");
                return Err(ControlError::Failed(if state == "cancelled" {
                    format!("job {id} was cancelled")
                } else {
                    format!("job {id} failed: {error}")
                }));
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

fn field<'a>(record: &'a Record, name: &str) -> &'a str {
    record.get(name).map(String::as_str).unwrap_or("")
}

fn progress_text(progress: &serde_json::Value) -> String {
    let n = |k: &str| progress[k].as_u64().unwrap_or(0);
    format!(
        "{}/{} pieces, {} points, {} points/s",
        n("pieces_done"),
        n("pieces_total"),
        thousands(n("points")),
        thousands(progress["rate"].as_f64().unwrap_or(0.0) as u64)
    )
}

fn time_text(record: &Record, name: &str) -> String {
    match record.get(name).and_then(|t| t.parse::<i64>().ok()) {
        Some(ms) => format_time(ms.saturating_mul(1_000_000)),
        None => "-".into(),
    }
}

/// The arguments with any password in a URL hidden.
pub fn shown_args(record: &Record) -> String {
    let args: Vec<String> = serde_json::from_str(field(record, "args")).unwrap_or_default();
    args.iter()
        .map(|a| {
            if a.contains("://") {
                redact(a)
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A record as JSON, arguments redacted and JSON fields parsed.
pub fn record_json(record: &Record) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (k, v) in record {
        let value = match k.as_str() {
            "args" => serde_json::Value::from(shown_args(record)),
            "progress" | "workers" | "runs" => {
                serde_json::from_str(v).unwrap_or(serde_json::Value::Null)
            }
            _ => serde_json::Value::from(v.clone()),
        };
        out.insert(k.clone(), value);
    }
    serde_json::Value::Object(out)
}

/// `admin jobs`: the newest jobs as a table (or JSON), or one job in full.
pub async fn show(config: &Config, args: &JobsArgs) -> Result<String, ControlError> {
    let named = match &args.action {
        Some(JobsAction::Cancel { id }) => Some(id),
        None => args.id.as_ref(),
    };
    if let Some(id) = named.filter(|id| !super::valid_id(id)) {
        return Err(ControlError::Usage(format!("{id:?} is not a job id")));
    }
    let routing = &config.routing;
    let store = Store::connect(&routing.redis_url, &routing.key_prefix).await?;
    if let Some(JobsAction::Cancel { id }) = &args.action {
        let outcome = store.cancel(id).await?;
        return Ok(format!("job {id}: {outcome}\n"));
    }
    if let Some(id) = &args.id {
        let record = store
            .get(id)
            .await?
            .ok_or_else(|| ControlError::Failed(format!("no job {id:?}")))?;
        let json = record_json(&record);
        if args.json {
            return Ok(format!(
                "{}\n",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            ));
        }
        let mut out = String::new();
        for (k, v) in json.as_object().into_iter().flatten() {
            let text = match v {
                serde_json::Value::String(s) if k.ends_with("_ms") => {
                    time_text(&record, k) + &format!(" ({s})")
                }
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("{k:<13} {text}\n"));
        }
        return Ok(out);
    }
    let records = store.list(50).await?;
    if args.json {
        let all: Vec<serde_json::Value> = records.iter().map(record_json).collect();
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({ "jobs": all })).unwrap_or_default()
        ));
    }
    Ok(table(&records))
}

/// The jobs as a table, newest first.
pub fn table(records: &[Record]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "KIND".into(),
        "STATE".into(),
        "WORKER".into(),
        "PROGRESS".into(),
        "STARTED".into(),
        "ENDED".into(),
        "ARGS".into(),
        "ERROR".into(),
    ]];
    for r in records {
        let progress: serde_json::Value =
            serde_json::from_str(field(r, "progress")).unwrap_or_default();
        let state = match (field(r, "state"), field(r, "waiting_for")) {
            ("waiting", holder) if !holder.is_empty() => format!("waiting for {holder}"),
            (state, _) => state.to_string(),
        };
        rows.push([
            field(r, "id").to_string(),
            field(r, "kind").to_string(),
            state,
            field(r, "worker").to_string(),
            if progress.is_null() {
                "-".into()
            } else {
                progress_text(&progress)
            },
            time_text(r, "started_ms"),
            time_text(r, "ended_ms"),
            crate::protocol::response::truncate(&shown_args(r), 60).to_string(),
            crate::protocol::response::truncate(field(r, "error"), 80).to_string(),
        ]);
    }
    if records.is_empty() {
        return "no jobs\n".into();
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
