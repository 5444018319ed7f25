//! `POST|PUT /v1.0/publish/{pubsub}/{topic}` and the alpha bulk publish.

use super::errors::{ApiError, no_content};
use crate::cloudevent::{self, Publication, TraceContext};
use crate::components::Message;
use crate::runtime::PubSubComponent;
use crate::sidecar::SidecarState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

type Params = Query<Vec<(String, String)>>;

fn raw_payload(pubsub: &str, metadata: &BTreeMap<String, String>) -> Result<bool, ApiError> {
    match metadata.get("rawPayload") {
        None => Ok(false),
        Some(v) => crate::go::parse_bool(v).ok_or_else(|| {
            ApiError::rich(
                StatusCode::BAD_REQUEST,
                "ERR_PUBSUB_REQUEST_METADATA",
                format!(
                    "failed deserializing metadata. Error: rawPayload: strconv.ParseBool: parsing {v:?}: invalid syntax"
                ),
                "DAPR_PUBSUB_METADATA_DESERIALIZATION",
                Some(("pubsub", pubsub)),
            )
        }),
    }
}

/// Finds the pub/sub visible to this app (404 otherwise).
fn lookup<'a>(state: &'a SidecarState, name: &str) -> Result<&'a PubSubComponent, ApiError> {
    state.runtime.pubsub(state.app_id(), name).ok_or_else(|| {
        ApiError::rich(
            StatusCode::NOT_FOUND,
            "ERR_PUBSUB_NOT_FOUND",
            format!("pubsub {name} is not found"),
            "DAPR_PUBSUB_NOT_FOUND",
            Some(("pubsub", name)),
        )
    })
}

/// Checks that this app may publish to `topic` (403 otherwise). daprd checks this last, when
/// the envelope is already built, so metadata and envelope errors win over 403.
fn allowed(state: &SidecarState, pubsub: &PubSubComponent, topic: &str) -> Result<(), ApiError> {
    let name = &pubsub.spec.name;
    if !pubsub.scopes.may_publish(state.app_id(), topic) {
        return Err(ApiError::rich(
            StatusCode::FORBIDDEN,
            "ERR_PUBSUB_FORBIDDEN",
            format!("topic {topic} is not allowed for app id {}", state.app_id()),
            "DAPR_PUBSUB_FORBIDDEN",
            Some(("pubsub", name)),
        ));
    }
    Ok(())
}

fn publish_error(topic: &str, pubsub: &str, cause: &str) -> ApiError {
    ApiError::rich(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        format!("error when publishing to topic {topic} in pubsub {pubsub}: {cause}"),
        "DAPR_PUBSUB_PUBLISH_MESSAGE",
        Some(("pubsub", pubsub)),
    )
}

/// Builds the broker bytes for one payload.
#[allow(clippy::too_many_arguments)]
fn envelope(
    state: &SidecarState,
    pubsub: &str,
    topic: &str,
    content_type: Option<&str>,
    body: &[u8],
    metadata: &BTreeMap<String, String>,
    raw: bool,
    trace: &TraceContext,
) -> Result<Bytes, ApiError> {
    if raw {
        return Ok(Bytes::copy_from_slice(body));
    }
    let p = Publication {
        app_id: state.app_id(),
        pubsub,
        topic,
        content_type,
        body,
        metadata,
        trace,
    };
    let ce = if cloudevent::is_cloudevent(content_type) {
        cloudevent::complete(&p).map_err(|e| {
            tracing::debug!(%topic, %pubsub, error = %e, "cannot create cloudevent");
            ApiError::rich(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_PUBSUB_CLOUD_EVENTS_SER",
                "cannot create cloudevent",
                "DAPR_PUBSUB_CLOUD_EVENT_CREATION",
                Some(("pubsub", pubsub)),
            )
        })?
    } else {
        cloudevent::wrap(&p)
    };
    Ok(Bytes::from(cloudevent::to_go_json(ce)))
}

async fn send(
    pubsub: &PubSubComponent,
    topic: &str,
    data: Bytes,
    metadata: BTreeMap<String, String>,
) -> Result<(), String> {
    let msg = Message {
        topic: topic.to_string(),
        data,
        metadata,
    };
    pubsub.broker.publish(msg).await.map_err(|e| e.to_string())
}

fn trace_of(headers: &HeaderMap) -> TraceContext {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    TraceContext::child_of(h("traceparent"), h("tracestate"))
}

pub(super) async fn publish(
    State(state): State<Arc<SidecarState>>,
    Path((name, topic)): Path<(String, String)>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pubsub = lookup(&state, &name)?;
    let metadata = crate::metadata::query_metadata(&params);
    let raw = raw_payload(&name, &metadata)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let trace = trace_of(&headers);
    let data = envelope(
        &state,
        &name,
        &topic,
        content_type,
        &body,
        &metadata,
        raw,
        &trace,
    )?;
    allowed(&state, pubsub, &topic)?;
    match send(pubsub, &topic, data, metadata).await {
        Ok(()) => {
            tracing::debug!(app_id = %state.app_id(), pubsub = %name, %topic, raw, "published");
            Ok(no_content())
        }
        Err(cause) => {
            tracing::debug!(app_id = %state.app_id(), pubsub = %name, %topic, %cause, "publish failed");
            Err(publish_error(&topic, &name, &cause))
        }
    }
}

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

fn events_ser(message: impl Into<String>) -> ApiError {
    ApiError::legacy(StatusCode::BAD_REQUEST, "ERR_PUBSUB_EVENTS_SER", message)
}

fn entry_bytes(entry: &BulkEntry) -> Result<Vec<u8>, ApiError> {
    use base64::Engine;
    let mt = cloudevent::media_type(&entry.content_type);
    let mismatch = || {
        events_ser(format!(
            "error when unmarshalling the request for topic: entry {} has an event that does not match its content type {}",
            entry.entry_id, entry.content_type
        ))
    };
    if mt == "application/octet-stream" {
        let s = entry.event.as_str().ok_or_else(mismatch)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| mismatch())
    } else if mt.starts_with("text/") || mt == "application/xml" {
        Ok(entry
            .event
            .as_str()
            .ok_or_else(mismatch)?
            .as_bytes()
            .to_vec())
    } else if mt == "application/json" || mt == cloudevent::CLOUDEVENT_CONTENT_TYPE {
        serde_json::to_vec(&entry.event).map_err(|_| mismatch())
    } else {
        Err(events_ser(format!(
            "error when unmarshalling the request for topic: unsupported content type {:?} for entry {}",
            entry.content_type, entry.entry_id
        )))
    }
}

pub(super) async fn bulk_publish(
    State(state): State<Arc<SidecarState>>,
    Path((name, topic)): Path<(String, String)>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pubsub = lookup(&state, &name)?;
    let query_meta = crate::metadata::query_metadata(&params);
    let raw = raw_payload(&name, &query_meta)?;
    let entries: Vec<BulkEntry> = serde_json::from_slice(&body).map_err(|e| {
        events_ser(format!(
            "error when unmarshaling the request for topic {topic} pubsub {name}: {e}"
        ))
    })?;
    let mut seen = HashSet::new();
    for e in &entries {
        if e.entry_id.is_empty() {
            return Err(events_ser("entryId is required for every entry"));
        }
        if !seen.insert(e.entry_id.as_str()) {
            return Err(events_ser(format!("entryId {} is duplicated", e.entry_id)));
        }
    }
    let trace = trace_of(&headers);
    let mut prepared = Vec::with_capacity(entries.len());
    for e in &entries {
        let bytes = entry_bytes(e)?;
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
        if let Err(cause) = send(pubsub, &topic, data, metadata).await {
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
