//! The Zipkin exporter daprd registers when `spec.tracing.zipkin.endpointAddress` is set
//! (`pkg/runtime/runtime.go` `setupTracing`, which hands the address to OpenTelemetry Go's
//! `exporters/zipkin` `New`): each batch of spans is posted as a Zipkin v2 JSON array
//! (<https://zipkin.io/zipkin-api/#/default/post_spans>) to the address as given.
//!
//! The span model follows that exporter's (`exporters/zipkin/model.go` `SpanModels`): ids in
//! hex, times in microseconds, the span kind in capitals (none for internal spans), the app id
//! as the local endpoint's service name, attributes as string tags, the status as
//! `otel.status_code` (and `error` with its description), events as annotations.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Map, Value, json};

/// How long one export may take before it is abandoned (the batch processor moves on).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Posts spans to a Zipkin v2 endpoint.
#[derive(Debug)]
pub struct ZipkinExporter {
    url: String,
    service_name: String,
    /// Built on first export: the blocking client must not be built on an async runtime's
    /// thread, and exports run on the batch processor's own thread.
    client: OnceLock<Result<reqwest::blocking::Client, String>>,
}

impl ZipkinExporter {
    pub fn new(url: String, service_name: String) -> Self {
        Self {
            url,
            service_name,
            client: OnceLock::new(),
        }
    }

    fn post(&self, body: Vec<u8>) -> OTelSdkResult {
        let client = self
            .client
            .get_or_init(|| {
                reqwest::blocking::Client::builder()
                    .timeout(EXPORT_TIMEOUT)
                    .build()
                    .map_err(|e| format!("the Zipkin HTTP client could not be built: {e}"))
            })
            .as_ref()
            .map_err(|e| OTelSdkError::InternalFailure(e.clone()))?;
        let response = client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .map_err(|e| OTelSdkError::InternalFailure(format!("Zipkin at {}: {e}", self.url)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(OTelSdkError::InternalFailure(format!(
                "Zipkin at {} answered {}",
                self.url,
                response.status()
            )))
        }
    }
}

impl SpanExporter for ZipkinExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let spans: Vec<Value> = batch
            .iter()
            .map(|span| zipkin_span(span, &self.service_name))
            .collect();
        let body = serde_json::to_vec(&spans)
            .map_err(|e| OTelSdkError::InternalFailure(format!("Zipkin spans: {e}")))?;
        self.post(body)
    }
}

/// One span in Zipkin's v2 model.
pub fn zipkin_span(span: &SpanData, service_name: &str) -> Value {
    let context = &span.span_context;
    let mut out = Map::new();
    out.insert("traceId".into(), json!(context.trace_id().to_string()));
    out.insert("id".into(), json!(context.span_id().to_string()));
    if span.parent_span_id != SpanId::INVALID {
        out.insert("parentId".into(), json!(span.parent_span_id.to_string()));
    }
    out.insert("name".into(), json!(span.name));
    let kind = match span.span_kind {
        SpanKind::Server => Some("SERVER"),
        SpanKind::Client => Some("CLIENT"),
        SpanKind::Producer => Some("PRODUCER"),
        SpanKind::Consumer => Some("CONSUMER"),
        SpanKind::Internal => None,
    };
    if let Some(kind) = kind {
        out.insert("kind".into(), json!(kind));
    }
    let start = micros(span.start_time);
    out.insert("timestamp".into(), json!(start));
    // Zipkin reads a zero duration as "unknown": a span that took under a microsecond says 1.
    out.insert(
        "duration".into(),
        json!(micros(span.end_time).saturating_sub(start).max(1)),
    );
    out.insert(
        "localEndpoint".into(),
        json!({ "serviceName": service_name }),
    );
    let annotations: Vec<Value> = span
        .events
        .iter()
        .map(|event| {
            json!({ "timestamp": micros(event.timestamp), "value": event.name.to_string() })
        })
        .collect();
    if !annotations.is_empty() {
        out.insert("annotations".into(), Value::Array(annotations));
    }
    let mut tags: Map<String, Value> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), json!(kv.value.to_string())))
        .collect();
    match &span.status {
        Status::Unset => {}
        Status::Ok => {
            tags.insert("otel.status_code".into(), json!("OK"));
        }
        Status::Error { description } => {
            tags.insert("otel.status_code".into(), json!("ERROR"));
            tags.insert("error".into(), json!(description.to_string()));
        }
    }
    let scope = span.instrumentation_scope.name();
    if !scope.is_empty() {
        tags.insert("otel.scope.name".into(), json!(scope));
    }
    if !tags.is_empty() {
        out.insert("tags".into(), Value::Object(tags));
    }
    Value::Object(out)
}

fn micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
