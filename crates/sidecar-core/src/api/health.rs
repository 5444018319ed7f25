//! `GET /v1.0/healthz` and `GET /v1.0/healthz/outbound`.

use super::errors::{ApiError, no_content};
use crate::sidecar::SidecarState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

/// 204 once the app channel is up and subscriptions are registered; 500 before.
pub(super) async fn healthz(
    State(state): State<Arc<SidecarState>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    if let Some(app_id) = crate::metadata::query_param(&params, "appid")
        && app_id != state.app_id()
    {
        return Err(ApiError::legacy(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_HEALTH_APPID_NOT_MATCH",
            "dapr app-id does not match",
        ));
    }
    if state.is_ready() {
        Ok(no_content())
    } else {
        Err(ApiError::legacy(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_HEALTH_NOT_READY",
            "dapr is not ready",
        ))
    }
}

/// 204 as soon as the API serves (components are loaded before the server starts).
pub(super) async fn outbound() -> Response {
    no_content()
}
