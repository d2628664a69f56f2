//! Sources of routing tables. A source only turns the outside world into
//! a candidate (the text of a configuration, or a node list) and hands it
//! to a [`Sink`]; validating and publishing it is the sink's job, which the
//! server provides when it starts a source (`server::reload`). No source
//! knows anything of HTTP or of the server.
//!
//! * [`file`]: the config file, re-read when it changes (editors that
//!   replace the file included) and on SIGHUP.
//! * [`dns`]: DNS SRV records, the nodes of clusters with `srv`.
//! * [`redis`](mod@redis): the routing document in Redis, with RabbitMQ
//!   change notices and a poll (`source = "redis"`).
//! * [`overrides`](mod@overrides): node mode overrides in Redis (with any
//!   source, when `redis_url` is set), and this router's receipt for them.

pub mod dns;
pub mod file;
pub mod overrides;
pub mod redis;

use crate::config::{Config, NodeConfig};
use crate::routing::overrides::{Overrides, Receipt};

/// Why the overrides follower ([`overrides`]) is woken: by the Redis
/// routing listener ([`redis`](mod@redis)) or by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Read the overrides now (and report).
    Read,
    /// Write this router's receipt now.
    Report,
}

/// What became of a candidate handed to a [`Sink`].
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Published as this version.
    Swapped(u64),
    /// Same routing as the live table: nothing to do.
    Unchanged,
    /// Refused with these problems (logged and counted by the sink); the
    /// live table stays.
    Refused(Vec<String>),
}

/// The one place that validates and publishes routing tables, as the
/// sources see it.
pub trait Sink: Send + Sync + 'static {
    /// The configuration the live table was built from (with the nodes
    /// discovered through DNS SRV).
    fn running_config(&self) -> Config;

    /// A routing document (`default_cluster`, `[[cluster]]`, `[[route]]`)
    /// from `origin`; the running `[routing]` settings stay.
    fn apply_document(&self, text: &str, origin: &str) -> Applied;

    /// The running configuration with the nodes of the SRV cluster
    /// `cluster` replaced by `nodes`; `None` when there is no such cluster
    /// any more.
    fn replace_discovered_nodes(
        &self,
        cluster: &str,
        nodes: Vec<NodeConfig>,
        origin: &str,
    ) -> Option<Applied>;

    /// Whether change notices (RabbitMQ) are being received right now.
    fn set_notices_subscribed(&self, subscribed: bool);

    /// The SRV targets of `cluster` left out at the last refresh because
    /// their host did not resolve (`host:port`; empty when all resolved).
    fn srv_targets_unresolved(&self, cluster: &str, targets: &[String]);

    /// The version of the routing document (Redis) the live table follows,
    /// once a document of that version has been applied.
    fn set_document_version(&self, version: u64);

    /// The node mode overrides of `version` (the well-formed ones), read
    /// from Redis when `read_at` (a monotonic instant) began: the live
    /// table is rebuilt from the running configuration with them.
    fn apply_overrides(
        &self,
        version: u64,
        overrides: Overrides,
        read_at: std::time::Instant,
    ) -> Applied;

    /// What this router has applied, for its receipt in Redis (`at_ms` 0:
    /// the follower stamps it).
    fn receipt(&self) -> Receipt;
}
