//! What every handler shares.

use std::sync::Arc;

use secrecy::SecretString;

use crate::checkpoint::PendingCheckpoints;
use crate::sink::EntrySink;
use crate::trail::TrailStore;

/// Shared state of the running service.
#[derive(Debug)]
pub struct Context {
    pub trails: TrailStore,
    pub sink: Arc<dyn EntrySink>,
    /// Trails appended to since the last signed checkpoints.
    pub checkpoints: PendingCheckpoints,
    pub pubsub: String,
    pub app_id: String,
    pub admin_token: SecretString,
    pub page_limit_default: usize,
    pub page_limit_max: usize,
}

/// The state handed to axum handlers and subscription handlers.
pub type AppState = Arc<Context>;
