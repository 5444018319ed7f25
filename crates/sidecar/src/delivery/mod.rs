//! Subscriptions and delivery to the app.

use crate::sidecar::SidecarState;
use std::sync::Arc;

/// A subscription this sidecar registered with a broker.
#[derive(Debug)]
pub struct ActiveSubscription {
    pub pubsubname: String,
    pub topic: String,
    handle: Option<crate::components::Subscription>,
}

impl ActiveSubscription {
    pub(crate) async fn close(self) {
        if let Some(h) = self.handle {
            h.close().await;
        }
    }
}

/// Startup sequence of a sidecar (daprd 3.1).
pub(crate) async fn startup(state: Arc<SidecarState>) {
    state.ready.send_replace(true);
}
