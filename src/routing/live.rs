//! The live routing table: one `ArcSwap`, the only place a table is published.
//!
//! Readers call [`LiveTable::load`] once per request and keep the `Arc` to the
//! end, so a swap never changes the table under a request in flight.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::RoutingTable;

/// Holder of the current routing snapshot.
#[derive(Debug)]
pub struct LiveTable {
    current: ArcSwap<RoutingTable>,
}

impl LiveTable {
    pub fn new(table: RoutingTable) -> LiveTable {
        LiveTable {
            current: ArcSwap::from_pointee(table),
        }
    }

    /// The snapshot in force now.
    pub fn load(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    /// Replaces the snapshot; requests already running keep the old one.
    pub fn publish(&self, table: RoutingTable) {
        // each source logs the swap it caused, with what triggered it
        tracing::debug!(version = table.version(), source = %table.source().description, "routing table published");
        self.current.store(Arc::new(table));
    }
}
