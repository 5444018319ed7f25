//! Trace context between `tracing` spans and the W3C `traceparent` header
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>).
//!
//! The services describe their work with `tracing` spans; when the process exports traces
//! (service-kit installs the OpenTelemetry layer), every span also has an OpenTelemetry span
//! context. The helpers here continue an incoming `traceparent` in a span, and turn the current
//! span into the `traceparent` a Dapr call carries, so the sidecar and the next service continue
//! the same trace. Without the layer they cost a lookup and change nothing: an incoming
//! `traceparent` is passed on as it came, as before traces were exported.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Declares that this process exports traces (service-kit does, once its OpenTelemetry layer is
/// installed). Until then the span helpers of the Dapr calls are skipped entirely.
pub fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// Whether this process exports traces: spans that exist only for the export are made only then.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Marks `span` failed with `error` as its description.
pub fn fail(span: &tracing::Span, error: &dyn std::fmt::Display) {
    span.set_status(Status::error(error.to_string()));
}

/// `version-traceid-parentid-flags` as a span context; `None` for anything malformed (the W3C
/// rule for a malformed header is to start a new trace, not to fail the request).
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    // Version 00 has exactly four parts; later versions may append fields.
    let well_formed = lower_hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && lower_hex(trace_id, 32)
        && lower_hex(span_id, 16)
        && lower_hex(flags, 2);
    if !well_formed {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The `traceparent` of `context` (version 00).
pub fn format_traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// The OpenTelemetry span context of `span`; invalid when traces are not exported.
pub fn span_context(span: &tracing::Span) -> SpanContext {
    span.context().span().span_context().clone()
}

/// The `traceparent` naming `span` as the parent, when traces are exported.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span_context(span);
    context.is_valid().then(|| format_traceparent(&context))
}

/// Makes `span` (just created, not entered yet) continue `traceparent`. Returns whether it did:
/// false without a valid header, and false when traces are not exported.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) -> bool {
    let Some(parent) = traceparent.and_then(parse_traceparent) else {
        return false;
    };
    span.set_parent(Context::new().with_remote_span_context(parent))
        .is_ok()
}

/// Links `span` to `linked` without making it a child (work one span found and another trace
/// owns, like a reminder a scan found due). An invalid context is ignored.
pub fn link(span: &tracing::Span, linked: SpanContext) {
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// Fills the `trace_id` and `span_id` fields `span` declared (as `tracing::field::Empty`), so
/// the log lines inside it name its trace. Starts the OpenTelemetry span, so the parent must be
/// set before. Nothing is recorded when traces are not exported.
pub fn record_ids(span: &tracing::Span) {
    let context = span_context(span);
    if context.is_valid() {
        span.record("trace_id", tracing::field::display(context.trace_id()));
        span.record("span_id", tracing::field::display(context.span_id()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_headers_round_trip_and_others_are_ignored() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse_traceparent(good).unwrap();
        assert!(context.is_remote() && context.is_sampled());
        assert_eq!(format_traceparent(&context), good);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!parse_traceparent(unsampled).unwrap().is_sampled());
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_exporting_layer_nothing_is_continued_or_produced() {
        let span = tracing::info_span!("t", trace_id = tracing::field::Empty);
        assert!(!continue_trace(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        ));
        assert_eq!(traceparent_of(&span), None);
    }

    #[test]
    fn with_an_exporting_layer_spans_continue_the_header_and_name_themselves() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let span = tracing::info_span!(
                "server",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty
            );
            assert!(continue_trace(&span, Some(incoming)));
            record_ids(&span);
            let own = traceparent_of(&span).unwrap();
            let own = parse_traceparent(&own).unwrap();
            assert_eq!(
                own.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_ne!(own.span_id().to_string(), "00f067aa0ba902b7");
            assert!(own.is_sampled());
            // A child made inside it is in the same trace, under it.
            let child = span.in_scope(|| tracing::info_span!("client"));
            let child = span_context(&child);
            assert_eq!(child.trace_id(), own.trace_id());
            assert_ne!(child.span_id(), own.span_id());
        });
    }
}
