//! A view of a running replica for whoever embeds it (tests): the lease, the scans, a nudge.

use std::sync::Arc;

use tokio::sync::watch;

use crate::context::Context;

/// Lets a caller (tests, an embedding process) observe a running replica and nudge it.
#[derive(Debug, Clone)]
pub struct Handle {
    ctx: Arc<Context>,
}

impl Handle {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// Whether this replica currently holds the scanner lease.
    pub fn holds_lease(&self) -> bool {
        self.ctx.lease.is_held()
    }

    /// This replica's lease holder id.
    pub fn replica_id(&self) -> &str {
        self.ctx.lease.holder()
    }

    /// Scans completed by this replica so far; `changed()` fires after each one.
    pub fn scans(&self) -> watch::Receiver<u64> {
        self.ctx.scans.subscribe()
    }

    /// Asks for a scan now instead of at the next tick.
    pub fn scan_now(&self) {
        self.ctx.scan_now.notify_one();
    }

    /// Drops the lease locally without releasing it in the store, as a crashed replica would.
    pub fn abandon_lease(&self) {
        self.ctx.lease.abandon();
    }
}
