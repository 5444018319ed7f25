//! `GET /v1.0/healthz` and `GET /v1.0/healthz/outbound`.

use crate::sidecar::SidecarState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub(super) async fn healthz(State(state): State<Arc<SidecarState>>) -> Response {
    if state.is_ready() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({"errorCode":"ERR_HEALTH_NOT_READY","message":"dapr is not ready"})),
        )
            .into_response()
    }
}

pub(super) async fn outbound() -> StatusCode {
    StatusCode::NO_CONTENT
}
