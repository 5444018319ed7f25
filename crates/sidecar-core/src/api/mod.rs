//! The Dapr HTTP API served by each sidecar.
//!
//! Before routing, paths are normalised like daprd's router (`//` collapsed, trailing `/`
//! stripped); then the API token is checked (healthz exempt) and the body limit applied.

mod errors;
mod health;
mod meta;
mod publish;
mod secrets;
mod state;

pub use errors::ApiError;
pub(crate) use publish::parse_go_bool;

use crate::sidecar::SidecarState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::routing::{any, get, post, put};
use std::sync::Arc;

/// Builds the API router of one sidecar.
pub fn router(state: Arc<SidecarState>) -> Router {
    let api = Router::new()
        .route("/v1.0/healthz", get(health::healthz))
        .route("/v1.0/healthz/outbound", get(health::outbound))
        .route("/v1.0/metadata", get(meta::get_metadata))
        .route("/v1.0/metadata/{attr}", put(meta::put_metadata))
        .route(
            "/v1.0/publish/{pubsub}/{*topic}",
            post(publish::publish).put(publish::publish),
        )
        .route(
            "/v1.0-alpha1/publish/bulk/{pubsub}/{*topic}",
            post(publish::bulk_publish).put(publish::bulk_publish),
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
        .route(
            "/v1.0/invoke/{app_id}/method/{*method}",
            any(crate::invoke::invoke),
        )
        .layer(DefaultBodyLimit::max(state.opts.max_body_size))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::tokens::check_api_token,
        ))
        .with_state(state);
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::map_request(normalize_path))
}

/// Collapses `//` and strips a trailing `/` (daprd's router does the same).
async fn normalize_path(mut req: Request) -> Request {
    let path = req.uri().path();
    if path.len() > 1 && (path.ends_with('/') || path.contains("//")) {
        let mut clean = String::with_capacity(path.len());
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            clean.push('/');
            clean.push_str(seg);
        }
        if clean.is_empty() {
            clean.push('/');
        }
        if let Some(q) = req.uri().query() {
            clean.push('?');
            clean.push_str(q);
        }
        if let Ok(pq) = clean.parse::<axum::http::uri::PathAndQuery>() {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}
