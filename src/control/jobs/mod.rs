//! The job queue (SPEC section 8, "Jobs"): day-two work that runs
//! unattended, one job at a time per worker, visible to every operator.
//!
//! A job is a JSON message `{"id","kind","args"}` on the durable RabbitMQ
//! queue `<key_prefix>.jobs` ([`amqp`]); its record (kind, arguments,
//! state, worker, progress, error, times) is the Redis hash
//! `<key_prefix>:job:<id>`, listed in the sorted set `<key_prefix>:jobs`,
//! and its finished pieces the hash `<key_prefix>:job:<id>:pieces`
//! ([`store`]). A job's arguments are the flags of the command of the same
//! name, parsed by the same definitions ([`JobCommand`]), and a worker
//! ([`worker`]) runs the same function as that command. Two jobs that write
//! to the same node never run at once: a Redis lock per target node
//! ([`store::Locks`]), renewed by the holder's heartbeat.
//!
//! * [`enqueue`], [`list`], [`cancel`]: `admin enqueue|jobs`.

pub mod amqp;
pub mod commands;
pub mod store;
pub mod worker;

use clap::Parser;
use serde::{Deserialize, Serialize};

use super::backfill::BackfillArgs;
use super::backup::BackupArgs;
use super::cq_backfill::CqBackfillArgs;
use super::create_database::CreateDatabaseArgs;
use super::rebalance::RebalanceArgs;
use super::recover_node::RecoverNodeArgs;
use super::restore::RestoreArgs;
use super::sync_schema::SyncSchemaArgs;
use super::verify::VerifyArgs;
use super::ControlError;

/// The job kinds and their flags: those of the command of the same name.
#[derive(Debug, Clone, Parser)]
#[command(name = "job", no_binary_name = true, disable_help_subcommand = true)]
pub enum JobCommand {
    SyncSchema(SyncSchemaArgs),
    Backfill(BackfillArgs),
    Verify(VerifyArgs),
    Backup(BackupArgs),
    Restore(RestoreArgs),
    CreateDatabase(CreateDatabaseArgs),
    Rebalance(RebalanceArgs),
    RecoverNode(RecoverNodeArgs),
    CqBackfill(CqBackfillArgs),
}

/// The kinds a job may be.
pub const KINDS: [&str; 9] = [
    "sync-schema",
    "backfill",
    "verify",
    "backup",
    "restore",
    "create-database",
    "rebalance",
    "recover-node",
    "cq-backfill",
];

impl JobCommand {
    /// Parses `kind` and its flags exactly as the command line would.
    pub fn parse(kind: &str, args: &[String]) -> Result<JobCommand, ControlError> {
        if !KINDS.contains(&kind) {
            return Err(ControlError::Usage(format!(
                "unknown job kind {kind:?} (one of: {})",
                KINDS.join(", ")
            )));
        }
        let words = std::iter::once(kind.to_string()).chain(args.iter().cloned());
        JobCommand::try_parse_from(words).map_err(|e| {
            // the error's first paragraph: clap names missing flags on the
            // lines after "the following required arguments were not provided:"
            let text = e.render().to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty())
                .collect();
            let what = match lines.join(" ") {
                j if j.is_empty() => "invalid flags".to_string(),
                j => j,
            };
            ControlError::Usage(format!("{kind}: {}", what.trim_start_matches("error: ")))
        })
    }
}

/// A job message on the queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobMessage {
    pub id: String,
    pub kind: String,
    pub args: Vec<String>,
}

/// Whether `id` may name a job: 1 to 128 of `[A-Za-z0-9._-]`, so that it
/// cannot reach into other Redis keys (`…:job:<id>:pieces`).
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A new job id: time-ordered and unique (`20261207T170312-1a2b3c4d`).
pub fn new_id() -> String {
    let now = crate::clock::unix_ms();
    let secs = (now / 1000) as i64;
    let text = super::time::format_time(secs * 1_000_000_000);
    let compact: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(15)
        .collect();
    let mut bytes = [0u8; 4];
    fill_random(&mut bytes);
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{compact}-{suffix}")
}

/// Random bytes from the OS (ids and worker names need to be unique, not secret).
pub fn fill_random(bytes: &mut [u8]) {
    use std::io::Read;
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(bytes));
    if read.is_err() {
        // fall back to the clock and the pid: unique enough within one fleet
        let seed = crate::clock::unix_ns() ^ (u64::from(std::process::id()) << 32);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 8) * 8)) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_flags_are_checked_like_the_commands() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(
            JobCommand::parse("backfill", &args(&["--from", "http://a:1", "--to", "main"])),
            Ok(JobCommand::Backfill(_))
        ));
        for (kind, flags) in [
            ("backfill", &["--from", "http://a:1"][..]),
            ("create-database", &["--cluster", "c"][..]),
            ("backfill", &["--from", "x", "--to", "y", "--bogus"][..]),
            ("format-disk", &[][..]),
        ] {
            match JobCommand::parse(kind, &args(flags)) {
                Err(ControlError::Usage(m)) => {
                    assert!(m.contains(kind), "{m}");
                    assert!(!m.ends_with(':'), "the missing flags are not named: {m}");
                }
                other => panic!("{kind} {flags:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ids_are_unique_and_sort_by_time() {
        let (a, b) = (new_id(), new_id());
        assert!(valid_id(&a));
        for bad in ["", "a:b", "x y", "../k", &"z".repeat(129)] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert_ne!(a, b);
        assert_eq!(a.len(), 24, "{a}");
        assert!(a[..15].chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
