//! The last step of publishing a routing table, shared by the paths that
//! publish one ([`super::reload`], and [`super::schema_first`] once a held
//! table's schema copy is done): the running configuration's lock, which
//! serialises them, and the swap itself.

use std::sync::Arc;

use super::Shared;
use crate::config::Config;
use crate::routing::RoutingTable;

/// Makes `table` the live one: node tasks follow, the swap is counted.
pub(super) fn swap_in(shared: &Arc<Shared>, table: RoutingTable, origin: &str) -> u64 {
    let version = table.version();
    shared.routing.publish(table);
    shared.node_tasks.sync(shared, &shared.routing.load());
    shared.reloads.update(|s| s.swaps += 1);
    shared.monitor.table_swapped(version, origin);
    version
}

/// The running configuration, locked (what serialises publishing).
pub(super) fn lock_running(shared: &Shared) -> std::sync::MutexGuard<'_, Config> {
    shared.running.lock().unwrap_or_else(|e| e.into_inner())
}
