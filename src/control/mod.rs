//! The control plane: the work behind `influxdb-router admin …`.
//!
//! Each command is one module with one entry function that takes its
//! settings as values and returns what it did or a [`ControlError`]; the
//! command line (`main.rs`) only parses flags, calls it and turns the result
//! into an exit status ([`ControlError::exit_code`]). A job of the same
//! name (the job queue, a later issue) calls the same function.
//!
//! This layer uses `config`, `protocol`, `queue`, `node` and `routing`, and
//! never `server`: it talks to routers and nodes over HTTP, to Redis and
//! RabbitMQ directly, like any other client.
//!
//! * [`routes`]: `admin routes show|push`, the routing document in Redis.
//! * [`status`]: `admin status`, the state of one or more routers.
//! * [`http`]: the HTTP client the commands share.
//! * [`converge`]: copy, verify and repair, shared by rebalance and recover-node.
//! * [`recover_node`]: `admin recover-node`, with [`overrides`] (writing node
//!   mode overrides) and [`receipts`] (waiting until every router applied a change).
//! * [`auto_recover`]: claiming a new node and enqueueing its recover-node job.
//! * [`cq_backfill`]: a continuous query run over past time ([`cq`] reads its text).
//! * [`moves`] and [`rebalance`]: data on a cluster that no longer owns it, and moving it.

pub mod answer;
pub mod auto_recover;
pub mod backfill;
pub mod backup;
pub mod converge;
pub mod cq;
pub mod cq_backfill;
pub mod create_database;
pub mod endpoint;
pub mod http;
pub mod influx;
pub mod jobs;
pub mod ledger;
pub mod lines;
pub mod moves;
pub mod msgpack;
pub mod overrides;
pub mod pieces;
pub mod progress;
pub mod rebalance;
pub mod receipts;
pub mod recover_node;
pub mod restore;
pub mod routes;
pub mod schema;
pub mod status;
pub mod sync_schema;
pub mod time;
pub mod verify;
pub mod writer;

/// Why a control-plane command failed; its message names what failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The command was used wrongly (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// The command could not do its work (exit status 1).
    #[error("{0}")]
    Failed(String),
}

/// `Err` naming the nodes that dropped out of `command` (`failed`, each
/// with why), if any did; `the_others` says what became of the rest.
pub fn nodes_dropped_out(
    command: &str,
    failed: &[String],
    the_others: &str,
) -> Result<(), ControlError> {
    if failed.is_empty() {
        return Ok(());
    }
    Err(ControlError::Failed(format!(
        "{command} incomplete: {} ({the_others}; run the same command again once the node is back)",
        failed.join("; ")
    )))
}

impl ControlError {
    /// 2 for bad usage, 1 for a failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ControlError::Usage(_) => 2,
            ControlError::Failed(_) => 1,
        }
    }
}
