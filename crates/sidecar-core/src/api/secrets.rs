//! Secrets API: `GET /v1.0/secrets/{store}/{name}` and `GET /v1.0/secrets/{store}/bulk`.
//!
//! Statuses and codes follow daprd: no secret store at all is 500
//! `ERR_SECRET_STORES_NOT_CONFIGURED`, an unknown store is **401** `ERR_SECRET_STORE_NOT_FOUND`,
//! a store failure (e.g. an unknown secret in a file store) is 500 `ERR_SECRET_GET`.
//! Success is 200 with `{"<entry>":"<value>"}` (bulk: `{"<secret>":{"<entry>":"<value>"}}`).

use super::errors::ApiError;
use crate::secretstores::SecretStoreComponent;
use crate::sidecar::SidecarState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

fn store<'a>(state: &'a SidecarState, name: &str) -> Result<&'a SecretStoreComponent, ApiError> {
    if !state.runtime.has_secret_stores(state.app_id()) {
        return Err(ApiError::legacy(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_SECRET_STORES_NOT_CONFIGURED",
            "secret store is not configured",
        ));
    }
    state
        .runtime
        .secret_store(state.app_id(), name)
        .ok_or_else(|| {
            ApiError::legacy(
                StatusCode::UNAUTHORIZED,
                "ERR_SECRET_STORE_NOT_FOUND",
                format!("failed finding secret store with key {name}"),
            )
        })
}

pub(super) async fn get_secret(
    State(state): State<Arc<SidecarState>>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let component = store(&state, &name)?;
    let secret = component.store.get(&key).map_err(|e| {
        ApiError::legacy(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_SECRET_GET",
            format!("failed getting secret with key {key} from secret store {name}: {e}"),
        )
    })?;
    Ok((StatusCode::OK, axum::Json(secret)).into_response())
}

pub(super) async fn bulk_secrets(
    State(state): State<Arc<SidecarState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let component = store(&state, &name)?;
    let secrets = component.store.bulk().map_err(|e| {
        ApiError::legacy(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_SECRET_GET",
            format!("failed getting secrets from secret store {name}: {e}"),
        )
    })?;
    Ok((StatusCode::OK, axum::Json(secrets)).into_response())
}
