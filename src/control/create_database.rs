//! `create-database --cluster C --db DB [RP flags]`: creates a database on
//! every node of a cluster. The statement goes through a router (`--router`,
//! by default the one of this configuration), which broadcasts it like any
//! client's `CREATE DATABASE`: nodes that are down get it through their
//! durable queues when they come back, ahead of later writes.

use crate::config::Config;

use super::endpoint::{self, Allow, Endpoint};
use super::http::HttpClient;
use super::influx::{ident, Influx};
use super::time::{influxql_duration, parse_go_duration};
use super::ControlError;

/// The arguments of `create-database`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CreateDatabaseArgs {
    /// The cluster whose nodes get the database
    #[arg(long, value_name = "C")]
    pub cluster: String,
    /// The database
    #[arg(long, value_name = "DB")]
    pub db: String,
    /// Its default retention policy's duration (like 30d; default: forever)
    #[arg(long, value_name = "D")]
    pub duration: Option<String>,
    /// Its replication factor
    #[arg(long, value_name = "N")]
    pub replication: Option<u32>,
    /// Its shard group duration (like 1d)
    #[arg(long, value_name = "D")]
    pub shard_duration: Option<String>,
    /// Its default retention policy's name (default: autogen)
    #[arg(long, value_name = "NAME")]
    pub rp_name: Option<String>,
    /// The router to send it through (default: this configuration's [server] bind)
    #[arg(long, value_name = "URL")]
    pub router: Option<String>,
}

/// What a create-database did.
#[derive(Debug, Clone)]
pub struct CreateReport {
    pub statement: String,
    pub nodes: Vec<String>,
    pub summary: String,
}

/// A duration flag in nanoseconds: InfluxQL units (`30d`, `1w`, `12h`) or Go's.
fn duration_flag(name: &str, text: &str) -> Result<i64, ControlError> {
    let units = [("w", 604_800), ("d", 86_400)];
    for (unit, seconds) in units {
        if let Some(n) = text.strip_suffix(unit).and_then(|n| n.parse::<i64>().ok()) {
            return Ok(n.saturating_mul(seconds * 1_000_000_000));
        }
    }
    parse_go_duration(text).map_err(|e| ControlError::Usage(format!("--{name}: {e}")))
}

/// The statement the flags ask for.
pub fn statement(args: &CreateDatabaseArgs) -> Result<String, ControlError> {
    if args.db.is_empty() {
        return Err(ControlError::Usage("--db needs a database name".into()));
    }
    let mut text = format!("CREATE DATABASE {}", ident(&args.db));
    let with = args.duration.is_some()
        || args.replication.is_some()
        || args.shard_duration.is_some()
        || args.rp_name.is_some();
    if with {
        text.push_str(" WITH");
        if let Some(d) = &args.duration {
            let ns = duration_flag("duration", d)?;
            text.push_str(&format!(" DURATION {}", influxql_duration(ns)));
        }
        if let Some(n) = args.replication {
            if n == 0 {
                return Err(ControlError::Usage(
                    "--replication must be at least 1".into(),
                ));
            }
            text.push_str(&format!(" REPLICATION {n}"));
        }
        if let Some(d) = &args.shard_duration {
            let ns = duration_flag("shard-duration", d)?;
            text.push_str(&format!(" SHARD DURATION {}", influxql_duration(ns)));
        }
        if let Some(name) = &args.rp_name {
            text.push_str(&format!(" NAME {}", ident(name)));
        }
    }
    Ok(text)
}

/// The nodes the database lands on (for the job's node locks).
pub async fn targets(
    config: &Config,
    args: &CreateDatabaseArgs,
) -> Result<Vec<Endpoint>, ControlError> {
    endpoint::resolve(&args.cluster, config, Allow::NodeOrCluster).await
}

/// Runs `create-database`.
pub async fn run(config: &Config, args: &CreateDatabaseArgs) -> Result<CreateReport, ControlError> {
    let statement = statement(args)?;
    let nodes = targets(config, args).await?;
    let router = args
        .router
        .clone()
        .unwrap_or_else(|| super::status::default_router(config));
    let mut via = endpoint::parse_url(&router)?;
    // the router checks these against the nodes, as for any client
    via.user = nodes[0].user.clone();
    via.password = nodes[0].password.clone();
    via.label = format!("router {}", via.label);
    let http = HttpClient::new().map_err(ControlError::Failed)?;
    Influx::new(via, http).exec(&statement).await?;
    let labels: Vec<String> = nodes.iter().map(|n| n.label.clone()).collect();
    let summary = format!(
        "create-database: {statement} through {router} for {}",
        labels.join(", ")
    );
    Ok(CreateReport {
        statement,
        nodes: labels,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_from_flags() {
        let mut args = CreateDatabaseArgs {
            cluster: "main".into(),
            db: "tele metry".into(),
            ..Default::default()
        };
        assert_eq!(statement(&args).unwrap(), r#"CREATE DATABASE "tele metry""#);
        args.duration = Some("30d".into());
        args.replication = Some(2);
        args.shard_duration = Some("1d".into());
        args.rp_name = Some("month".into());
        assert_eq!(
            statement(&args).unwrap(),
            r#"CREATE DATABASE "tele metry" WITH DURATION 30d REPLICATION 2 SHARD DURATION 1d NAME "month""#
        );
        args.duration = Some("soon".into());
        assert!(matches!(statement(&args), Err(ControlError::Usage(_))));
    }
}
