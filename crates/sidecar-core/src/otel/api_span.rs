//! The span of each Dapr API call (see the module docs of [`crate::otel`] for daprd's names).
//!
//! The request continues with the span's `traceparent` in place of the caller's, so whatever the
//! handler passes on (an invocation's forwarded headers) continues under this span; a publish
//! reads [`ApiSpan`] to stamp the CloudEvent with it. The response carries it too, as daprd's.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::KeyValue;

use super::SidecarTracer;

/// The API call's span context, for handlers that write it somewhere (the CloudEvent).
#[derive(Debug, Clone)]
pub struct ApiSpan {
    pub traceparent: String,
}

/// Middleware of a tracing sidecar: traces every API call but the health checks.
pub async fn trace_api_call(
    State(tracer): State<SidecarTracer>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    // daprd's `isHealthzRequest`.
    if path.contains("/healthz") {
        return next.run(request).await;
    }
    let method = request.method().as_str().to_owned();
    let incoming = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut span = tracer.start(incoming.as_deref(), || (path.clone(), Vec::new()));
    let traceparent = span.traceparent();
    if let Ok(value) = HeaderValue::from_str(&traceparent) {
        request.headers_mut().insert("traceparent", value);
    }
    let url_full = span.is_sampled().then(|| {
        request
            .uri()
            .path_and_query()
            .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned())
    });
    request.extensions_mut().insert(ApiSpan {
        traceparent: traceparent.clone(),
    });
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    if let Some(url_full) = url_full {
        let mut attributes = vec![
            KeyValue::new("dapr.protocol", "http"),
            KeyValue::new("dapr.api", format!("{method} {path}")),
            KeyValue::new("dapr.status_code", status.to_string()),
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("url.full", url_full),
        ];
        let (block, name) = building_block(&path, &method);
        attributes.extend(block);
        span.set_attributes(attributes);
        if let Some(name) = name {
            span.rename(name);
        }
    }
    if !response.headers().contains_key("traceparent")
        && let Ok(value) = HeaderValue::from_str(&traceparent)
    {
        response.headers_mut().insert("traceparent", value);
    }
    span.end_with_http_status(status);
    response
}

/// The building block's span attributes, and the span's name when daprd renames it.
fn building_block(path: &str, method: &str) -> (Vec<KeyValue>, Option<String>) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        // `appendStateSpanAttributes`.
        [_, "state", store, ..] => (
            vec![
                KeyValue::new("db.system", "state"),
                KeyValue::new("db.connection_string", "state"),
                KeyValue::new("db.statement", format!("{method} {path}")),
                KeyValue::new("db.name", (*store).to_owned()),
            ],
            None,
        ),
        // `appendPubSubSpanAttributes`: the topic is everything after the pub/sub name.
        [_, "publish", _pubsub, topic @ ..] if !topic.is_empty() => (
            vec![
                KeyValue::new("messaging.system", "pubsub"),
                KeyValue::new("messaging.destination.name", topic.join("/")),
            ],
            None,
        ),
        // `appendDirectMessagingSpanAttributes`.
        [_, "invoke", app, "method", method @ ..] => (
            vec![
                KeyValue::new("rpc.service", "ServiceInvocation"),
                KeyValue::new("net.peer.name", (*app).to_owned()),
            ],
            Some(format!("CallLocal/{app}/{}", method.join("/"))),
        ),
        _ => (Vec::new(), None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn keys(attributes: &[KeyValue]) -> Vec<String> {
        attributes
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect()
    }

    #[test]
    fn building_blocks_get_daprds_attributes_and_invocations_its_name() {
        let (state, name) = building_block("/v1.0/state/todo-state/task:1", "GET");
        assert_eq!(
            keys(&state),
            [
                "db.system=state",
                "db.connection_string=state",
                "db.statement=GET /v1.0/state/todo-state/task:1",
                "db.name=todo-state"
            ]
        );
        assert_eq!(name, None);
        let (publish, _) = building_block("/v1.0/publish/todo-pubsub/task-created", "POST");
        assert_eq!(
            keys(&publish),
            [
                "messaging.system=pubsub",
                "messaging.destination.name=task-created"
            ]
        );
        let (invoke, name) =
            building_block("/v1.0/invoke/audit-logger/method/audit/tasks/1", "GET");
        assert_eq!(
            keys(&invoke),
            [
                "rpc.service=ServiceInvocation",
                "net.peer.name=audit-logger"
            ]
        );
        assert_eq!(
            name.as_deref(),
            Some("CallLocal/audit-logger/audit/tasks/1")
        );
        assert!(building_block("/v1.0/metadata", "GET").0.is_empty());
    }
}
