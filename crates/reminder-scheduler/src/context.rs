//! What handlers, the scanner and the lease loop share.

use std::sync::Arc;
use std::time::Duration;

use dapr_http::DaprClient;
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::lease::Lease;
use crate::policy::Policy;
use crate::store::Store;

/// Shared state of one replica.
#[derive(Debug)]
pub struct Context {
    pub dapr: DaprClient,
    pub store: Store,
    pub pubsub: String,
    /// This service's app id: the `source` of what it publishes.
    pub app_id: String,
    pub policy: Policy,
    pub clock: Arc<dyn Clock>,
    pub tombstone_ttl: Duration,
    pub scan_interval: Duration,
    pub scan_lookback: Duration,
    pub lease_renew_interval: Duration,
    pub lease: Lease,
    /// Wakes the scan loop before its next tick (a task was filed inside the window, or the
    /// lease was just acquired).
    pub scan_now: Notify,
    /// Number of scans this replica has completed (tests wait on it instead of sleeping).
    pub scans: watch::Sender<u64>,
}

/// The axum state of the subscription handlers.
pub type AppState = Arc<Context>;
