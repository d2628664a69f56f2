//! Where requests go: the routing snapshot and the one place that publishes it.
//!
//! * [`table`]: [`RoutingTable`], an immutable snapshot of clusters, nodes
//!   and compiled rules.
//! * [`rules`]: compiled `[[route]]` rules and their lookups (first match wins).
//! * [`glob`]: the `*`, `?`, `[a-z]` patterns of `[[route]]`.
//! * [`hash`]: rendezvous hashing for sharded rules (a stable, pinned hash).
//! * [`live`]: [`LiveTable`], the `ArcSwap` holder requests load the snapshot from.
//! * [`orphans`]: queues on disk of nodes no longer configured.
//! * [`overrides`]: node mode overrides kept in Redis (names and formats).
//! * [`source`]: where new tables come from at run time (the config file).
//!
//! A request loads the snapshot once and uses it to the end; nothing on the
//! request path takes a lock to read routing state.

pub use crate::config::glob;
pub mod hash;
pub mod live;
pub mod orphans;
pub mod overrides;
pub mod rules;
pub mod source;
pub mod table;

pub use live::LiveTable;
pub use rules::WriteTo;
pub use table::{BuildError, Cluster, RoutingTable, TableSource};

/// Batches keyed by [`WriteTo`] as batches per cluster: a batch whose
/// measurement is being moved goes to both clusters (the payload is shared,
/// not copied).
pub fn per_cluster<P: Clone>(batches: Vec<(WriteTo, P)>) -> Vec<(usize, P)> {
    let mut out = Vec::with_capacity(batches.len());
    for (to, batch) in batches {
        if let Some(also) = to.also {
            out.push((also, batch.clone()));
        }
        out.push((to.owner, batch));
    }
    out
}
