//! `POST|PUT /v1.0-alpha1/publish/bulk/{pubsub}/{topic}` (`onBulkPublish` in daprd's
//! `pkg/api/http/http.go`).

use super::errors::{ApiError, info_metadata, no_content};
use super::publish::{allowed, envelope, lookup, raw_payload, send, trace_of};
use crate::cloudevent::content_type_is;
use crate::sidecar::SidecarState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkEntry {
    #[serde(default)]
    entry_id: String,
    event: serde_json::Value,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

/// The three `ERR_PUBSUB_EVENTS_SER` errors of daprd's `pkg/api/errors/pubsub.go`
/// (`UnmarshalEvents`, `MarshalEnvelope`, `MarshalEvents`): rich, built `WithAppError`.
fn events_ser(
    app_id: &str,
    pubsub: &str,
    reason: &str,
    message: String,
    cause: Option<&str>,
) -> ApiError {
    let metadata = match cause {
        Some(error) => info_metadata([("appID", app_id), ("error", error)]),
        None => info_metadata([("appID", app_id)]),
    };
    ApiError::rich(StatusCode::BAD_REQUEST, "ERR_PUBSUB_EVENTS_SER", &message)
        .resource("pubsub", pubsub, &message)
        .info(reason, metadata)
}

const MISMATCH: &str = "error: mismatch between contentType and event";

/// The bytes of one entry's event (`ConvertEventToBytes` in daprd's `pkg/api/http/util.go`);
/// the error is the cause daprd reports.
fn entry_bytes(entry: &BulkEntry) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let ct = entry.content_type.as_str();
    if content_type_is(ct, "application/octet-stream") {
        let s = entry.event.as_str().ok_or(MISMATCH)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| {
                format!("error: unable to decode base64 application/octect-stream data: {e}")
            })
    } else if ct.to_ascii_lowercase().starts_with("text/") || content_type_is(ct, "application/xml")
    {
        Ok(entry.event.as_str().ok_or(MISMATCH)?.as_bytes().to_vec())
    } else if content_type_is(ct, "application/json")
        || content_type_is(ct, crate::cloudevent::CLOUDEVENT_CONTENT_TYPE)
    {
        serde_json::to_vec(&entry.event).map_err(|e| format!("{MISMATCH}: {e}"))
    } else {
        Err(MISMATCH.to_string())
    }
}

pub(super) async fn bulk_publish(
    State(state): State<Arc<SidecarState>>,
    Path((name, topic)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let query_meta = crate::metadata::query_metadata(&params);
    let pubsub = lookup(&state, &name, &query_meta)?;
    let raw = raw_payload(&name, &query_meta)?;
    let app_id = state.app_id();
    let entries: Vec<BulkEntry> = serde_json::from_slice(&body).map_err(|e| {
        events_ser(
            app_id,
            &name,
            "DAPR_PUBSUB_UNMARSHAL_EVENTS",
            format!("error when unmarshaling the request for topic {topic} pubsub {name}: {e}"),
            None,
        )
    })?;
    // daprd converts each entry and then checks its id, entry by entry.
    let mut seen = HashSet::new();
    let mut converted = Vec::with_capacity(entries.len());
    for e in &entries {
        let bytes = entry_bytes(e).map_err(|cause| {
            events_ser(
                app_id,
                &name,
                "DAPR_PUBSUB_MARSHAL_ENVELOPE",
                format!(
                    "error when marshalling cloud event envelope for topic {topic} pubsub {name}: {cause}"
                ),
                Some(&cause),
            )
        })?;
        if e.entry_id.is_empty() || !seen.insert(e.entry_id.as_str()) {
            let cause = "entryId is duplicated or not present for entry";
            return Err(events_ser(
                app_id,
                &name,
                "DAPR_PUBSUB_MARSHAL_EVENTS",
                format!(
                    "error marshaling events to bytes for topic {topic} pubsub {name}. error: {cause}"
                ),
                Some(cause),
            ));
        }
        converted.push(bytes);
    }
    let trace = trace_of(&headers);
    let mut prepared = Vec::with_capacity(entries.len());
    for (e, bytes) in entries.iter().zip(converted) {
        // Quirk kept from daprd: only entries with their own metadata get the query metadata.
        let metadata = match &e.metadata {
            Some(own) => {
                let mut m = query_meta.clone();
                m.extend(own.clone());
                m
            }
            None => BTreeMap::new(),
        };
        let ct = Some(e.content_type.as_str()).filter(|c| !c.is_empty());
        let data = envelope(&state, &name, &topic, ct, &bytes, &metadata, raw, &trace)?;
        prepared.push((e.entry_id.clone(), data, metadata));
    }
    allowed(&state, pubsub, &topic)?;
    let mut failed = Vec::new();
    for (entry_id, data, metadata) in prepared {
        if let Err(cause) = send(&state, pubsub, &topic, data, metadata).await {
            failed.push(serde_json::json!({"entryId": entry_id, "error": cause}));
        }
    }
    tracing::debug!(app_id = %state.app_id(), pubsub = %name, %topic, entries = entries.len(), failed = failed.len(), "bulk published");
    if failed.is_empty() {
        return Ok(no_content());
    }
    let body =
        serde_json::json!({"failedEntries": failed, "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE"});
    Ok((StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response())
}
