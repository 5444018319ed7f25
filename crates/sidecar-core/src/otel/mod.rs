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
//! The sampling decision is taken before a span is built (daprd's parent-based ratio sampler,
//! [`trace_context::Sampling::parent_based_ratio`]): an unsampled call or delivery builds no
//! span data and passes on a new span id of its trace, sampled flag cleared. Spans go to every
//! exporter the Configuration names: OTLP/HTTP, Zipkin ([`zipkin`]), or both.
//!
//! With tracing off there is no tracer and none of this runs: trace context is passed on as
//! before.

mod api_span;
mod config;
pub mod zipkin;

pub use api_span::{ApiSpan, trace_api_call};
pub use config::{DEFAULT_SAMPLING_RATE, TracingConfigError, TracingOptions, TracingSection};

use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, TraceId, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use trace_context::{HeadIds, Sampling, TraceParent};

use self::zipkin::ZipkinExporter;

/// One sidecar's tracer: its spans are exported under the app id as `service.name`, as daprd's.
#[derive(Debug, Clone)]
pub struct SidecarTracer {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    sampling: Sampling,
}

impl SidecarTracer {
    /// Builds the exporters the options name, each behind a batch processor, for `app_id`.
    pub fn new(app_id: &str, options: &TracingOptions) -> Result<Self, String> {
        // The SDK's sampler sees only spans the head decision sampled ([`SidecarTracer::start`]).
        let mut builder = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .with_id_generator(HeadIds)
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(app_id.to_owned())
                    .build(),
            );
        if let Some(url) = &options.otlp_traces_url {
            // The endpoint is set here, so `OTEL_EXPORTER_OTLP_*` variables meant for the apps
            // do not redirect the sidecar.
            let exporter = SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(url.clone())
                .build()
                .map_err(|e| format!("the OTLP span exporter could not be built: {e}"))?;
            builder = builder.with_batch_exporter(exporter);
        }
        if let Some(url) = &options.zipkin_url {
            builder =
                builder.with_batch_exporter(ZipkinExporter::new(url.clone(), app_id.to_owned()));
        }
        let provider = builder.build();
        let tracer = provider.tracer("dapr-sidecar");
        Ok(Self {
            provider,
            tracer,
            sampling: Sampling::parent_based_ratio(options.sampling_rate),
        })
    }

    /// Starts a client span, child of `traceparent` when it is valid, when the head decision
    /// samples it; `describe` (the span's name and attributes) runs only then.
    pub fn start(
        &self,
        traceparent: Option<&str>,
        describe: impl FnOnce() -> (String, Vec<KeyValue>),
    ) -> SidecarSpan {
        let parent = TraceParent::from_header(traceparent);
        let decided = self.sampling.decide(parent.as_ref());
        if !decided.sampled {
            return SidecarSpan::Unsampled(decided.child());
        }
        let (name, attributes) = describe();
        let (cx, root) = match parent {
            Some(parent) => (
                Context::new()
                    .with_remote_span_context(parent.to_span_context(TraceState::default())),
                TraceId::INVALID,
            ),
            None => (Context::new(), decided.trace_id),
        };
        let span = trace_context::opening_with(root, || {
            self.tracer
                .span_builder(name)
                .with_kind(SpanKind::Client)
                .with_attributes(attributes)
                .start_with_context(&self.tracer, &cx)
        });
        SidecarSpan::Sampled(Box::new(span))
    }

    /// Exports the spans still queued; blocks while it does, so call it on a blocking thread.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "sidecar spans could not all be exported at shutdown");
        }
    }
}

/// A started span (ended by [`SidecarSpan::end_with_http_status`] or
/// [`SidecarSpan::end_with_error`], or when dropped), or the context of an unsampled one.
#[derive(Debug)]
pub enum SidecarSpan {
    // Boxed: the SDK's span is large, and only sampled calls pay for it.
    Sampled(Box<opentelemetry_sdk::trace::Span>),
    Unsampled(TraceParent),
}

impl SidecarSpan {
    /// The `traceparent` naming this span as the parent (sampled flag included).
    pub fn traceparent(&self) -> String {
        match self {
            Self::Sampled(span) => format_traceparent(span.span_context()),
            Self::Unsampled(context) => context.to_string(),
        }
    }

    pub fn is_sampled(&self) -> bool {
        matches!(self, Self::Sampled(_))
    }

    pub fn set_attributes(&mut self, attributes: impl IntoIterator<Item = KeyValue>) {
        if let Self::Sampled(span) = self {
            span.set_attributes(attributes);
        }
    }

    pub fn rename(&mut self, name: String) {
        if let Self::Sampled(span) = self {
            span.update_name(name);
        }
    }

    /// Ends the span with the status daprd derives from an HTTP status
    /// (`pkg/diagnostics/http_tracing.go` `traceStatusFromHTTPCode`): an error from 400 on.
    pub fn end_with_http_status(self, status: u16) {
        let Self::Sampled(mut span) = self else {
            return;
        };
        if status >= 400 {
            let text = axum::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Unknown");
            span.set_status(Status::error(format!("Code({status}): {text}")));
        }
        span.end();
    }

    /// Ends the span as failed with `reason` (no HTTP status: the call did not complete).
    pub fn end_with_error(self, reason: String) {
        if let Self::Sampled(mut span) = self {
            span.set_status(Status::error(reason));
            span.end();
        }
    }
}

/// `version-traceid-parentid-flags` as a remote span context, `None` when malformed.
pub fn parse_traceparent(value: &str) -> Option<opentelemetry::trace::SpanContext> {
    TraceParent::parse(value)
        .ok()
        .map(|parsed| parsed.to_span_context(TraceState::default()))
}

/// The version-00 `traceparent` of `context`.
pub fn format_traceparent(context: &opentelemetry::trace::SpanContext) -> String {
    TraceParent {
        trace_id: context.trace_id(),
        parent_id: context.span_id(),
        sampled: context.is_sampled(),
    }
    .to_string()
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
            otlp_traces_url: Some("http://127.0.0.1:9/v1/traces".into()),
            zipkin_url: None,
        };
        let tracer = SidecarTracer::new("app", &options).unwrap();
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = tracer.start(Some(parent), || {
            ("pubsub/t".into(), delivery_attributes("t"))
        });
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
                .start(Some(unsampled), || unreachable!(
                    "an unsampled span is not described"
                ))
                .is_sampled()
        );
        span.end_with_http_status(200);
    }
}
