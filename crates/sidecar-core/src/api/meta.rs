//! `GET /v1.0/metadata` and `PUT /v1.0/metadata/{attr}`.
//!
//! daprd keeps every extended attribute it is given, bounded only by `--max-body-size`
//! (pkg/api/http/metadata.go `onPutMetadata`, pkg/api/universal/metadata.go `SetMetadata`). This
//! sidecar adds local limits so a client that keeps inventing keys cannot grow it without end:
//! at most [`MAX_EXTENDED_ENTRIES`] attributes, keys up to [`MAX_EXTENDED_KEY_BYTES`] and values
//! up to [`MAX_EXTENDED_VALUE_BYTES`]. A request over a limit gets daprd's malformed-request
//! answer (400 `ERR_MALFORMED_REQUEST`) and changes nothing; replacing an existing attribute is
//! always allowed. The Dapr CLI stores a handful of short attributes, far inside these limits.

use super::ApiError;
use super::errors::no_content;
use crate::sidecar::SidecarState;
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub(super) async fn get_metadata(State(state): State<Arc<SidecarState>>) -> axum::Json<Value> {
    axum::Json(describe(&state))
}

/// The metadata document: daprd's `onGetMetadata` output, with its `omitempty` rules.
pub fn describe(state: &SidecarState) -> Value {
    let mut doc = Map::new();
    doc.insert("id".into(), state.app_id().into());
    doc.insert("runtimeVersion".into(), crate::RUNTIME_VERSION.into());
    let mut extended = state
        .extended
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    // daprd's `Universal.GetMetadata` (`pkg/api/universal/metadata.go`) always adds the
    // deprecated `daprRuntimeVersion`, so `extended` is never empty.
    extended.insert("daprRuntimeVersion".into(), crate::RUNTIME_VERSION.into());
    doc.insert("extended".into(), json!(extended));
    let components: Vec<Value> = state
        .runtime
        .components_for(state.app_id())
        .into_iter()
        .map(|c| {
            let mut v = json!({"name": c.name, "type": c.component_type, "version": c.version});
            let caps = state.runtime.capabilities(&c.name);
            if let (false, Some(obj)) = (caps.is_empty(), v.as_object_mut()) {
                obj.insert("capabilities".into(), json!(caps));
            }
            v
        })
        .collect();
    if !components.is_empty() {
        doc.insert("components".into(), components.into());
    }
    let subscriptions: Vec<Value> = state
        .subscriptions
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|s| s.describe())
        .collect();
    if !subscriptions.is_empty() {
        doc.insert("subscriptions".into(), subscriptions.into());
    }
    // `appConnectionProperties`, `actorRuntime` and `workflows` are struct values in daprd's
    // `metadataResponse` (`pkg/api/http/metadata.go`), which `omitempty` never drops; their
    // own fields are dropped when zero (a port of 0 when there is no app).
    let mut app = Map::new();
    if let Some(port) = state.opts.app_port.filter(|p| *p != 0) {
        app.insert("port".into(), port.into());
    }
    app.insert("protocol".into(), "http".into());
    if !state.opts.app_channel_address.is_empty() {
        app.insert(
            "channelAddress".into(),
            state.opts.app_channel_address.clone().into(),
        );
    }
    if let Some(health) = &state.opts.app_health {
        app.insert("health".into(), health.describe());
    }
    doc.insert("appConnectionProperties".into(), Value::Object(app));
    doc.insert(
        "actorRuntime".into(),
        json!({"runtimeStatus": "DISABLED", "hostReady": false}),
    );
    doc.insert("workflows".into(), json!({}));
    Value::Object(doc)
}

/// Most extended attributes one sidecar keeps.
pub const MAX_EXTENDED_ENTRIES: usize = 128;
/// Longest extended attribute name, in bytes.
pub const MAX_EXTENDED_KEY_BYTES: usize = 256;
/// Largest extended attribute value, in bytes.
pub const MAX_EXTENDED_VALUE_BYTES: usize = 16 * 1024;

/// A local limit (daprd has none here), answered in daprd's shape for a request it refuses.
fn over_limit(message: String) -> ApiError {
    ApiError::legacy(
        axum::http::StatusCode::BAD_REQUEST,
        "ERR_MALFORMED_REQUEST",
        message,
    )
}

pub(super) async fn put_metadata(
    State(state): State<Arc<SidecarState>>,
    Path(attr): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if attr.len() > MAX_EXTENDED_KEY_BYTES {
        return Err(over_limit(format!(
            "metadata key is {} bytes, longer than the local sidecar's limit of {MAX_EXTENDED_KEY_BYTES}",
            attr.len()
        )));
    }
    if body.len() > MAX_EXTENDED_VALUE_BYTES {
        return Err(over_limit(format!(
            "metadata value is {} bytes, larger than the local sidecar's limit of {MAX_EXTENDED_VALUE_BYTES}",
            body.len()
        )));
    }
    let mut extended = state
        .extended
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if extended.len() >= MAX_EXTENDED_ENTRIES && !extended.contains_key(&attr) {
        return Err(over_limit(format!(
            "too many metadata entries: the local sidecar keeps at most {MAX_EXTENDED_ENTRIES}"
        )));
    }
    extended.insert(attr, String::from_utf8_lossy(&body).into_owned());
    Ok(no_content())
}
