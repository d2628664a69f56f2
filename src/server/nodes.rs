//! The per-node background tasks — health checker and replayer — kept in
//! step with the routing table: a node that joins gets its tasks, a node
//! that leaves has them stopped (its queue stays on disk).

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use super::Shared;
use crate::node::{self, Node};
use crate::routing::RoutingTable;

/// The running tasks of every node in the live table.
#[derive(Debug, Default)]
pub struct NodeTasks {
    tracker: TaskTracker,
    running: Mutex<Vec<Running>>,
}

#[derive(Debug)]
struct Running {
    node: Arc<Node>,
    stop: watch::Sender<bool>,
}

impl NodeTasks {
    /// Starts the tasks of nodes in `table` that have none, and stops those
    /// of nodes no longer in it.
    pub fn sync(&self, shared: &Shared, table: &RoutingTable) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        running.retain(|r| {
            let keep = table.nodes().any(|n| Arc::ptr_eq(n, &r.node));
            if !keep {
                tracing::info!(node = %r.node.name(), "node left the routing table; its tasks stop, its queue stays");
                let _ = r.stop.send(true);
            }
            keep
        });
        for node in table.nodes() {
            if !running.iter().any(|r| Arc::ptr_eq(&r.node, node)) {
                running.push(self.start(shared, node));
            }
        }
    }

    fn start(&self, shared: &Shared, node: &Arc<Node>) -> Running {
        let (stop, stopped) = watch::channel(false);
        let health = shared.config.health.clone();
        self.tracker.spawn(node::health::run_checks(
            node.clone(),
            health,
            stopped.clone(),
        ));
        let buffer = shared.config.buffer.clone();
        self.tracker
            .spawn(node::replay::run(node.clone(), buffer, stopped));
        Running {
            node: node.clone(),
            stop,
        }
    }

    /// Stops every task and waits for them to end.
    pub async fn stop_all(&self) {
        if let Ok(mut running) = self.running.lock() {
            for r in running.drain(..) {
                let _ = r.stop.send(true);
            }
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}
