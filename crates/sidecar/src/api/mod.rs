//! The Dapr HTTP API served by each sidecar.

mod health;

use crate::sidecar::SidecarState;
use axum::Router;
use axum::routing::get;
use std::sync::Arc;

/// Builds the API router of one sidecar.
pub fn router(state: Arc<SidecarState>) -> Router {
    Router::new()
        .route("/v1.0/healthz", get(health::healthz))
        .route("/v1.0/healthz/outbound", get(health::outbound))
        .with_state(state)
}
