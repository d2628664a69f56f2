//! `admin sync-schema`: gives DST every database, retention policy and
//! continuous query of SRC, and its users with their privileges where the
//! credentials allow (see [`super::schema`] for what is compared and how).
//! Never drops or revokes anything; a second run finds nothing to do.

use std::path::PathBuf;

use crate::config::Config;

use super::endpoint::{self, Allow};
use super::http::HttpClient;
use super::influx::Influx;
use super::schema::{self, Passwords, Plan, Schema, Scope};
use super::ControlError;

/// The arguments of `admin sync-schema`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SyncSchemaArgs {
    /// Where the schema comes from: a node URL (http://user:pass@host:port) or CLUSTER/NODE
    #[arg(long, value_name = "SRC")]
    pub from: String,
    /// Where it goes: a node URL, CLUSTER/NODE, or CLUSTER (every write-enabled node of it)
    #[arg(long, value_name = "DST")]
    pub to: String,
    /// Only this database (repeatable; default: all but _internal)
    #[arg(long = "db", value_name = "DB")]
    pub databases: Vec<String>,
    /// Print the statements instead of running them
    #[arg(long)]
    pub dry_run: bool,
    /// Passwords for users created on DST: one `name:password` per line
    #[arg(long, value_name = "FILE")]
    pub user_password_file: Option<PathBuf>,
}

/// What a sync did (or would do) on each destination node.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub dry_run: bool,
    pub nodes: Vec<(String, Plan)>,
}

impl SyncReport {
    /// Statements run (or to run) over all nodes.
    pub fn statements(&self) -> usize {
        self.nodes.iter().map(|(_, p)| p.statements.len()).sum()
    }

    /// The statements per node, what was skipped, and a summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (node, plan) in &self.nodes {
            if !plan.statements.is_empty() {
                let verb = if self.dry_run { "would run" } else { "ran" };
                out.push_str(&format!("{node}: {verb}:\n"));
                for s in &plan.statements {
                    out.push_str(&format!("  {};\n", s.shown));
                }
            }
            for skipped in &plan.skipped {
                out.push_str(&format!("{node}: skipped: {skipped}\n"));
            }
        }
        let total = self.statements();
        if total == 0 {
            out.push_str("sync-schema: nothing to do\n");
        } else if self.dry_run {
            out.push_str(&format!(
                "sync-schema: {total} statements to run (dry run, nothing changed)\n"
            ));
        } else {
            out.push_str(&format!("sync-schema: {total} statements run\n"));
        }
        out
    }
}

/// Runs `admin sync-schema`.
pub async fn run(config: &Config, args: &SyncSchemaArgs) -> Result<SyncReport, ControlError> {
    let passwords = match &args.user_password_file {
        None => Passwords::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ControlError::Failed(format!("--user-password-file {}: {e}", path.display()))
            })?;
            Passwords::parse(&text).map_err(|e| {
                ControlError::Usage(format!("--user-password-file {}: {e}", path.display()))
            })?
        }
    };
    let src = endpoint::resolve(&args.from, config, Allow::Node)
        .await?
        .remove(0);
    let dst = endpoint::resolve(&args.to, config, Allow::NodeOrCluster).await?;
    let http = HttpClient::new().map_err(ControlError::Failed)?;
    let src = Influx::new(src, http.clone());
    let dst: Vec<Influx> = dst
        .into_iter()
        .map(|e| Influx::new(e, http.clone()))
        .collect();
    sync(&src, &dst, &args.databases, &passwords, args.dry_run).await
}

/// The sync itself, for the command and the job alike.
pub async fn sync(
    src: &Influx,
    dst: &[Influx],
    databases: &[String],
    passwords: &Passwords,
    dry_run: bool,
) -> Result<SyncReport, ControlError> {
    sync_scope(src, dst, databases, Scope::Everything, passwords, dry_run).await
}

/// Gives one node `dst` every database of `wanted` (read with
/// [`Scope::Databases`]) with its retention policies and continuous
/// queries, not users: what a router does before it sends a cluster writes
/// of databases it did not hold. Returns what it ran.
pub async fn apply_databases(wanted: &Schema, dst: &Influx) -> Result<Plan, ControlError> {
    apply_node(wanted, dst, Scope::Databases, &Passwords::default(), false).await
}

async fn sync_scope(
    src: &Influx,
    dst: &[Influx],
    databases: &[String],
    scope: Scope,
    passwords: &Passwords,
    dry_run: bool,
) -> Result<SyncReport, ControlError> {
    let wanted = schema::read(src, databases, scope).await?;
    let mut nodes = Vec::with_capacity(dst.len());
    for node in dst {
        let plan = apply_node(&wanted, node, scope, passwords, dry_run).await?;
        nodes.push((node.label().to_string(), plan));
    }
    Ok(SyncReport { dry_run, nodes })
}

/// What `node` lacks of `wanted`, run unless `dry_run`.
async fn apply_node(
    wanted: &Schema,
    node: &Influx,
    scope: Scope,
    passwords: &Passwords,
    dry_run: bool,
) -> Result<Plan, ControlError> {
    let existing = schema::database_names(node).await?;
    let present: Vec<String> = wanted
        .databases
        .iter()
        .map(|d| d.name.clone())
        .filter(|n| existing.contains(n))
        .collect();
    let have = schema::read(node, &present, scope).await?;
    let plan = schema::plan(wanted, &have, scope, passwords);
    if !dry_run {
        schema::apply(node, &plan).await?;
    }
    Ok(plan)
}
