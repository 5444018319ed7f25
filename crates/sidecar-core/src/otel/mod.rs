//! The sidecar's own spans, exported over OTLP/HTTP when its Configuration enables tracing
//! ([`TracingOptions`]), named and attributed as daprd names them so a trace reads
//! app → sidecar → broker → sidecar → app as it does with daprd:
//!
//! * every API call but the health checks: a client span named after the request path, with
//!   `dapr.api`, `dapr.protocol`, `dapr.status_code`, `http.request.method`, `url.full` and the
//!   building block's attributes (`pkg/diagnostics/http_tracing.go` `HTTPTraceMiddleware`,
//!   `spanAttributesMapFromHTTPContext`; `pkg/api/http/http.go` `appendStateSpanAttributes`,
//!   `appendPubSubSpanAttributes`); an invocation is renamed `CallLocal/<app>/<method>`
//!   (`pkg/api/http/directmessaging.go`). A publish's CloudEvent carries this span's context.
//! * every delivery to the app: a client span `pubsub/<topic>`, child of the event's
//!   `traceparent` (`pkg/runtime/subscription/postman/http/http.go` with
//!   `pkg/diagnostics/tracing.go` `StartInternalCallbackSpan`); the app receives its context.
//!
//! With tracing off there is no tracer and none of this runs: trace context is passed on as
//! before.

mod api_span;
mod config;

pub use api_span::{ApiSpan, trace_api_call};
pub use config::{DEFAULT_SAMPLING_RATE, TracingConfigError, TracingOptions, TracingSection};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

/// One sidecar's tracer: its spans are exported under the app id as `service.name`, as daprd's.
#[derive(Debug, Clone)]
pub struct SidecarTracer {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl SidecarTracer {
    /// Builds the exporter and the batch processor for `app_id`.
    pub fn new(app_id: &str, options: &TracingOptions) -> Result<Self, String> {
        // The endpoint is set here, so `OTEL_EXPORTER_OTLP_*` variables meant for the apps do
        // not redirect the sidecar.
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(options.otlp_traces_url.clone())
            .build()
            .map_err(|e| format!("the OTLP span exporter could not be built: {e}"))?;
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            options.sampling_rate.min(1.0),
        )));
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(app_id.to_owned())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("dapr-sidecar");
        Ok(Self { provider, tracer })
    }

    /// Starts a client span named `name`, child of `traceparent` when it is valid.
    pub fn start(
        &self,
        name: String,
        traceparent: Option<&str>,
        attributes: Vec<KeyValue>,
    ) -> SidecarSpan {
        let parent = match traceparent.and_then(parse_traceparent) {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        SidecarSpan { span }
    }

    /// Exports the spans still queued; blocks while it does, so call it on a blocking thread.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "sidecar spans could not all be exported at shutdown");
        }
    }
}

/// A started span; ended by [`SidecarSpan::end`] (or when dropped).
#[derive(Debug)]
pub struct SidecarSpan {
    span: opentelemetry_sdk::trace::Span,
}

impl SidecarSpan {
    /// The `traceparent` naming this span as the parent (sampled flag included).
    pub fn traceparent(&self) -> String {
        format_traceparent(self.span.span_context())
    }

    pub fn is_sampled(&self) -> bool {
        self.span.span_context().is_sampled()
    }

    pub fn set_attributes(&mut self, attributes: impl IntoIterator<Item = KeyValue>) {
        self.span.set_attributes(attributes);
    }

    pub fn rename(&mut self, name: String) {
        self.span.update_name(name);
    }

    /// Ends the span with the status daprd derives from an HTTP status
    /// (`pkg/diagnostics/http_tracing.go` `traceStatusFromHTTPCode`): an error from 400 on.
    pub fn end_with_http_status(mut self, status: u16) {
        if status >= 400 {
            let text = axum::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Unknown");
            self.span
                .set_status(Status::error(format!("Code({status}): {text}")));
        }
        self.span.end();
    }

    /// Ends the span as failed with `reason` (no HTTP status: the call did not complete).
    pub fn end_with_error(mut self, reason: String) {
        self.span.set_status(Status::error(reason));
        self.span.end();
    }
}

/// `version-traceid-parentid-flags` as a remote span context, `None` when malformed.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16)
        .ok()
        .filter(|_| flags.len() == 2)?;
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The version-00 `traceparent` of `context`.
pub fn format_traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// The attributes of a delivery span (`pkg/diagnostics/tracing.go`
/// `ConstructSubscriptionSpanAttributes`).
pub fn delivery_attributes(topic: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "pubsub"),
        KeyValue::new("messaging.destination.name", topic.to_owned()),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_round_trips_and_bad_headers_start_nothing() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(format_traceparent(&parse_traceparent(good).unwrap()), good);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "zz",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn spans_continue_the_callers_trace_and_name_themselves_as_parent() {
        let options = TracingOptions {
            sampling_rate: 1.0,
            // Nothing listens there; the spans are only started, never flushed.
            otlp_traces_url: "http://127.0.0.1:9/v1/traces".into(),
        };
        let tracer = SidecarTracer::new("app", &options).unwrap();
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = tracer.start("pubsub/t".into(), Some(parent), delivery_attributes("t"));
        let child = parse_traceparent(&span.traceparent()).unwrap();
        assert_eq!(
            child.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(child.span_id().to_string(), "00f067aa0ba902b7");
        assert!(span.is_sampled());
        // An unsampled caller stays unsampled (parent-based sampler).
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(
            !tracer
                .start("x".into(), Some(unsampled), Vec::new())
                .is_sampled()
        );
        span.end_with_http_status(200);
    }
}
