//! `POST|PUT /v1.0/publish/{pubsub}/{topic}` and the steps the alpha bulk publish shares.

use super::errors::{ApiError, info_metadata, no_content};
use crate::cloudevent::{self, Publication, TraceContext};
use crate::components::Message;
use crate::otel::ApiSpan;
use crate::runtime::PubSubComponent;
use crate::sidecar::SidecarState;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use resiliency::ErrorClass;
use std::collections::BTreeMap;
use std::sync::Arc;

type Params = Query<Vec<(String, String)>>;

/// `metadata.rawPayload` as components-contrib's `IsRawPayload` (`metadata/utils.go`) reads it:
/// the exact key, an empty value is `false`, anything else must be a Go `strconv.ParseBool` word.
pub(super) fn raw_payload(
    pubsub: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<bool, ApiError> {
    match metadata.get("rawPayload").map(String::as_str) {
        None | Some("") => Ok(false),
        Some(v) => crate::go::parse_bool(v).ok_or_else(|| {
            // `PubSubMetadataError.DeserializeError` in daprd's `pkg/api/errors/pubsub.go`.
            let message = format!(
                "failed deserializing metadata. Error: rawPayload value must be a valid boolean: actual is '{v}'"
            );
            ApiError::rich(
                StatusCode::BAD_REQUEST,
                "ERR_PUBSUB_REQUEST_METADATA",
                &message,
            )
            .resource("pubsub", pubsub, &message)
            .info(
                "DAPR_PUBSUB_METADATA_DESERIALIZATION",
                Some(metadata.clone()),
            )
        }),
    }
}

/// Finds the pub/sub visible to this app (404 otherwise).
/// `PubSubMetadataError.NotFound` (daprd's `pkg/api/errors/pubsub.go`) carries no ResourceInfo
/// and the request metadata in its ErrorInfo.
pub(super) fn lookup<'a>(
    state: &'a SidecarState,
    name: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<&'a PubSubComponent, ApiError> {
    state.runtime.pubsub(state.app_id(), name).ok_or_else(|| {
        ApiError::rich(
            StatusCode::NOT_FOUND,
            "ERR_PUBSUB_NOT_FOUND",
            format!("pubsub {name} is not found"),
        )
        .info("DAPR_PUBSUB_NOT_FOUND", Some(metadata.clone()))
    })
}

/// Checks that this app may publish to `topic` (403 otherwise). daprd checks this last, when
/// the envelope is already built, so metadata and envelope errors win over 403.
pub(super) fn allowed(
    state: &SidecarState,
    pubsub: &PubSubComponent,
    topic: &str,
) -> Result<(), ApiError> {
    let name = &pubsub.spec.name;
    if !pubsub.scopes.may_publish(state.app_id(), topic) {
        // `PubSubError.PublishForbidden`: the cause (daprd's `NotAllowedError`) has the same text.
        let message = format!("topic {topic} is not allowed for app id {}", state.app_id());
        return Err(
            ApiError::rich(StatusCode::FORBIDDEN, "ERR_PUBSUB_FORBIDDEN", &message)
                .resource("pubsub", name, &message)
                .info(
                    "DAPR_PUBSUB_FORBIDDEN",
                    info_metadata([("topic", topic), ("error", &message)]),
                ),
        );
    }
    Ok(())
}

/// `PubSubError.PublishMessage` (daprd's `pkg/api/errors/pubsub.go`).
fn publish_error(topic: &str, pubsub: &str, cause: &str) -> ApiError {
    let message = format!("error when publishing to topic {topic} in pubsub {pubsub}: {cause}");
    ApiError::rich(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        &message,
    )
    .resource("pubsub", pubsub, &message)
    .info(
        "DAPR_PUBSUB_PUBLISH_MESSAGE",
        info_metadata([("topic", topic), ("error", cause)]),
    )
}

/// Builds the broker bytes for one payload.
#[allow(clippy::too_many_arguments)]
pub(super) fn envelope(
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
            // `PubSubMetadataError.CloudEventCreation`, built `WithAppError`.
            let message = "cannot create cloudevent";
            ApiError::rich(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_PUBSUB_CLOUD_EVENTS_SER",
                message,
            )
            .resource("pubsub", pubsub, message)
            .info(
                "DAPR_PUBSUB_CLOUD_EVENT_CREATION",
                info_metadata([("appID", state.app_id()), ("error", &e.to_string())]),
            )
        })?
    } else {
        cloudevent::wrap(&p)
    };
    Ok(Bytes::from(ce.to_go_json()))
}

/// Publishes one message under the pub/sub's outbound resiliency policy (daprd's publisher runs
/// every publish and bulk publish through it: `pkg/runtime/pubsub/publisher/publisher.go`).
/// A breaker rejection reads `circuit breaker is open`.
pub(super) async fn send(
    state: &SidecarState,
    pubsub: &PubSubComponent,
    topic: &str,
    data: Bytes,
    metadata: BTreeMap<String, String>,
) -> Result<(), String> {
    // Told before the component gets the message, so an observer always sees a publish before
    // its deliveries (the in-memory broker can deliver before `publish` returns).
    if let Some(observer) = state.runtime.tap().observer() {
        observer.published(&crate::observe::Published {
            pubsub: &pubsub.spec.name,
            topic,
            publisher: state.app_id(),
            data: &data,
            metadata: &metadata,
        });
    }
    let msg = Message {
        topic: topic.to_string(),
        data,
        metadata,
    };
    let runner = state.policies.publish(&pubsub.spec.name);
    if runner.is_none() {
        return pubsub.broker.publish(msg).await.map_err(|e| e.to_string());
    }
    runner
        .run(
            || pubsub.broker.publish(msg.clone()),
            |_| ErrorClass::Retriable,
            Some(&state.shutdown),
        )
        .await
        .map_err(|e| e.to_string())
}

pub(super) fn trace_of(headers: &HeaderMap) -> TraceContext {
    TraceContext::child_of(
        header_text(headers, "traceparent").as_deref(),
        header_text(headers, "tracestate").as_deref(),
    )
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(super) async fn publish(
    State(state): State<Arc<SidecarState>>,
    Path((name, topic)): Path<(String, String)>,
    Query(params): Params,
    api_span: Option<Extension<ApiSpan>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let metadata = crate::metadata::query_metadata(&params);
    let pubsub = lookup(&state, &name, &metadata)?;
    let raw = raw_payload(&name, &metadata)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // A tracing sidecar stamps the event with its own span of this call (daprd's `onPublish`
    // writes the request span's context into the CloudEvent); otherwise a child of the caller's.
    let trace = match api_span {
        Some(Extension(span)) => TraceContext {
            traceparent: span.traceparent,
            tracestate: header_text(&headers, "tracestate").unwrap_or_default(),
        },
        None => trace_of(&headers),
    };
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
    match send(&state, pubsub, &topic, data, metadata).await {
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
