//! The live stream's fan-out: each item is serialized once and broadcast to every viewer through
//! a bounded ring. Sending never waits; a viewer that falls more than the backlog behind loses
//! the oldest items and learns how many (`event: lagged`).

use std::sync::Arc;
use tokio::sync::broadcast;

/// One server-sent event: its name and its JSON data.
#[derive(Debug, Clone)]
pub struct StreamItem {
    pub kind: &'static str,
    pub json: String,
}

/// The broadcast of stream items.
#[derive(Debug, Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<StreamItem>>,
}

impl Hub {
    pub fn new(backlog: usize) -> Hub {
        let (tx, _) = broadcast::channel(backlog.max(1));
        Hub { tx }
    }

    /// Whether anybody watches (lets producers skip serializing).
    pub fn has_viewers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Sends `value` as `kind` to every viewer; without viewers it is not even serialized.
    pub fn send<T: serde::Serialize>(&self, kind: &'static str, value: &T) {
        if !self.has_viewers() {
            return;
        }
        match serde_json::to_string(value) {
            Ok(json) => {
                // An error only means the last viewer left meanwhile.
                let _ = self.tx.send(Arc::new(StreamItem { kind, json }));
            }
            Err(error) => tracing::warn!(%error, kind, "cannot serialize a stream item"),
        }
    }

    /// A new viewer's receiver.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StreamItem>> {
        self.tx.subscribe()
    }
}
