//! # influxdb-router
//!
//! A router and relay that makes a fleet of InfluxDB 1.x servers look like one
//! server on port 5096. Writes are replicated to every write-enabled node of
//! the cluster, reads go to one healthy node, and administrative statements
//! are broadcast to every node.
//!
//! ## Layout
//!
//! * [`config`]: the TOML model, durations and sizes, validation that names
//!   file, key and problem, and the embedded default configuration.
//! * [`protocol`]: what the router must understand of InfluxDB's wire
//!   formats: the InfluxQL statement splitter and classifier, and the JSON
//!   error and result shapes.
//! * [`queue`]: the durable per-node queue (hinted handoff): segment files
//!   with length- and CRC-framed records, one group-commit writer thread per
//!   queue, a persisted read position, crash recovery that cuts torn tails.
//! * [`routing`]: the immutable routing snapshot (clusters and their nodes)
//!   and the one place that publishes it.
//! * [`node`]: one InfluxDB node as the router sees it: pooled HTTP client,
//!   health state, in-flight counter, and the active health checker.
//! * [`server`]: the HTTP listener and the handlers for `/write`,
//!   `/api/v2/write`, `/query`, `/ping`, `/health`, `/status` and `/metrics`.
//! * [`monitor`]: Prometheus metrics (one recorder per router) and
//!   self-monitoring: statistics and events written into `self_database`.
//! * [`control`]: the control plane behind `admin …`: routing documents
//!   in Redis today, schema and data copies, verification, backups and the
//!   job queue as they come; it never uses [`server`].
//! * [`tls`]: rustls configurations (ring provider) for the HTTPS listener
//!   and for `https://` nodes, read from PEM files.
//!
//! `main.rs` only parses the command line and calls [`server::run`] or a
//! [`control`] command.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![deny(clippy::dbg_macro, clippy::todo, clippy::await_holding_lock)]

pub mod clock;
pub mod config;
pub mod control;
pub mod monitor;
pub mod node;
pub mod payload;
pub mod protocol;
pub mod queue;
pub mod routing;
pub mod server;
pub mod tls;

/// The router's own version, as reported by `--version` and `/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
