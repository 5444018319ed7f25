//! The Dapr HTTP API served by each sidecar: health, metadata, publish, state, secrets and
//! Prometheus metrics, with
//! daprd's statuses and error bodies. Service invocation is [`crate::invoke`]; the server
//! ([`crate::server`]) puts both behind the token check and the body limit.

mod bulk_publish;
mod errors;
mod health;
mod meta;
mod metrics;
mod publish;
mod secrets;
mod state;
mod state_value;

pub use errors::ApiError;

use crate::sidecar::SidecarState;
use axum::Router;
use axum::routing::{get, post, put};
use std::sync::Arc;

/// The routes of the Dapr API (everything but service invocation), without state.
pub(crate) fn routes() -> Router<Arc<SidecarState>> {
    Router::new()
        .route("/v1.0/healthz", get(health::healthz))
        .route("/v1.0/healthz/outbound", get(health::outbound))
        .route("/v1.0/metadata", get(meta::get_metadata))
        .route("/metrics", get(metrics::metrics))
        .route("/v1.0/metadata/{attr}", put(meta::put_metadata))
        .route(
            "/v1.0/publish/{pubsub}/{*topic}",
            post(publish::publish).put(publish::publish),
        )
        .route(
            "/v1.0-alpha1/publish/bulk/{pubsub}/{*topic}",
            post(bulk_publish::bulk_publish).put(bulk_publish::bulk_publish),
        )
        .route(
            "/v1.0/state/{store}",
            post(state::save_state).put(state::save_state),
        )
        .route(
            "/v1.0/state/{store}/bulk",
            post(state::bulk_get).put(state::bulk_get),
        )
        .route(
            "/v1.0/state/{store}/transaction",
            post(state::transaction).put(state::transaction),
        )
        .route(
            "/v1.0/state/{store}/{key}",
            get(state::get_state).delete(state::delete_state),
        )
        .route("/v1.0/secrets/{store}/bulk", get(secrets::bulk_secrets))
        .route("/v1.0/secrets/{store}/{key}", get(secrets::get_secret))
}
