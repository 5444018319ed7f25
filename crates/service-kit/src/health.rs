//! Health endpoints.
//!
//! `/healthz` is liveness: the process answers, nothing more, so a slow sidecar never gets a
//! healthy pod restarted. `/readyz` is readiness: the sidecar's outbound health, because a service
//! that cannot reach its sidecar can neither store nor publish. Dapr's app health check probes
//! `/healthz` and stops deliveries when it fails, which is why liveness must stay cheap.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dapr_http::DaprClient;

use crate::Problem;

/// `GET /healthz` and `GET /readyz`.
pub fn health_routes(dapr: DaprClient) -> Router {
    Router::new()
        .route("/healthz", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/readyz",
            get(move || {
                let dapr = dapr.clone();
                async move { readiness(&dapr).await }
            }),
        )
}

async fn readiness(dapr: &DaprClient) -> Response {
    if dapr.is_ready().await {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Problem::unavailable("the Dapr sidecar is not reachable").into_response()
    }
}
