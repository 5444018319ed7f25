//! Service invocation: `/v1.0/invoke/{app-id}/method/{method}` to any app of the same runtime.
//!
//! The request goes straight to the target app's channel (one process hosts every sidecar, so the
//! sidecar-to-sidecar hop is skipped). Verb, query, headers and body pass through; the target's
//! status, headers and body come back unchanged. The caller's `dapr-api-token` was already
//! removed by the token check; the target's app token is added when configured.

use crate::api::ApiError;
use crate::sidecar::SidecarState;
use crate::tokens::TOKEN_HEADER;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::Arc;

/// Connection-level headers that must not be forwarded.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "host"
            | "content-length"
    )
}

fn invoke_error(app_id: &str, cause: impl std::fmt::Display) -> ApiError {
    ApiError::legacy(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_DIRECT_INVOKE",
        format!("failed to invoke, id: {app_id}, err: {cause}"),
    )
}

/// Axum handler for every verb.
pub async fn invoke(
    State(state): State<Arc<SidecarState>>,
    Path((app_id, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    uri: Uri,
    verb: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(target) = state.runtime.resolve_app(&app_id) else {
        return Err(invoke_error(
            &app_id,
            format!("couldn't find service: {app_id}"),
        ));
    };
    // The target's sidecar answers for an app its health checks found unhealthy.
    if !*target.healthy.borrow() {
        return Err(invoke_error(&app_id, "app is not in a healthy state"));
    }
    // Forward the method exactly as the caller encoded it (the decoded form may not be a valid
    // URL path, e.g. with spaces).
    let raw_method = uri
        .path()
        .split_once("/method/")
        .map_or(method.as_str(), |(_, m)| m);
    let mut url = format!(
        "http://{}/{}",
        target.addr,
        raw_method.trim_start_matches('/')
    );
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(&q);
    }
    let mut out_headers = reqwest::header::HeaderMap::new();
    for (name, value) in &headers {
        if !hop_by_hop(name) && name != TOKEN_HEADER {
            out_headers.append(name.clone(), value.clone());
        }
    }
    if let Ok(v) = state.app_id().parse() {
        out_headers.insert("dapr-caller-app-id", v);
    }
    if let Ok(v) = app_id.parse() {
        out_headers.insert("dapr-callee-app-id", v);
    }
    if let Some(v) = target.app_api_token.as_deref().and_then(|t| t.parse().ok()) {
        out_headers.insert(TOKEN_HEADER, v);
    }
    let response = state
        .client
        .request(verb, &url)
        .headers(out_headers)
        .body(body)
        .send()
        .await
        .map_err(|e| invoke_error(&app_id, e))?;
    let status = response.status();
    let mut resp_headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if !hop_by_hop(name) {
            resp_headers.append(name.clone(), value.clone());
        }
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| invoke_error(&app_id, e))?;
    tracing::debug!(caller = %state.app_id(), callee = %app_id, %method, %status, "invoked");
    if !resp_headers.contains_key(header::CONTENT_TYPE) && !bytes.is_empty() {
        resp_headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/octet-stream"),
        );
    }
    Ok((status, resp_headers, Body::from(bytes)).into_response())
}
