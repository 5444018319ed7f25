//! Trace context between `tracing` spans and the W3C `traceparent` header
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>).
//!
//! The services describe their work with `tracing` spans; when the process exports traces
//! (service-kit installs the OpenTelemetry layer), every span also has an OpenTelemetry span
//! context. The helpers here continue an incoming `traceparent` in a span, and turn the current
//! span into the `traceparent` a Dapr call carries, so the sidecar and the next service continue
//! the same trace. Without the layer they cost a lookup and change nothing: an incoming
//! `traceparent` is passed on as it came, as before traces were exported.
//!
//! With the layer, the sampling decision is taken at the head, before any span exists
//! ([`head`], [`traced`]): a sampled trace's spans are built and exported; an unsampled one
//! builds none (the exporting layer's filter only admits spans [`open`] starts and their
//! descendants), and carries on only its `traceparent`, sampled flag cleared.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, Status, TraceContextExt as _, TraceId, TraceState};
use trace_context::{Sampling, TraceParent};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static EXPORTING: AtomicBool = AtomicBool::new(false);
static SAMPLING: OnceLock<Sampling> = OnceLock::new();

/// Declares that this process exports traces (service-kit does, once its OpenTelemetry layer is
/// installed). Until then the span helpers of the Dapr calls are skipped entirely.
pub fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// Whether this process exports traces: spans that exist only for the export are made only then.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The head sampler of this process (the first call wins; parent-based always-on until then).
pub fn set_sampling(sampling: Sampling) {
    let _ = SAMPLING.set(sampling);
}

fn sampling() -> Sampling {
    SAMPLING
        .get()
        .copied()
        .unwrap_or(Sampling::PARENT_BASED_ALWAYS_ON)
}

/// `Some` while [`open`] builds a sampled root on this thread: the exporting layer's filter lets
/// that span in, and [`trace_context::HeadIds`] gives it the trace id its decision was taken on.
pub fn opening() -> Option<TraceId> {
    trace_context::opening()
}

/// The head decision for work that arrives with `traceparent` (or none) and is not inside a
/// sampled trace already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Traced: a span continuing `parent`, or the root of a new trace `trace_id`.
    Sampled {
        parent: Option<TraceParent>,
        trace_id: TraceId,
    },
    /// Not traced: no span data is built; this context (the caller's, flag cleared, or a new
    /// trace) is what the work passes on and logs.
    Unsampled(TraceParent),
}

/// Takes the head decision for `traceparent` with this process's sampler.
pub fn head(traceparent: Option<&str>) -> Head {
    let parent = TraceParent::from_header(traceparent);
    let decided = sampling().decide(parent.as_ref());
    if decided.sampled {
        Head::Sampled {
            parent,
            trace_id: decided.trace_id,
        }
    } else {
        Head::Unsampled(decided)
    }
}

/// Builds the span `make` returns as a sampled root (continuing `parent` when there is one):
/// the only way a span outside a sampled trace reaches the export.
pub fn open(
    parent: Option<TraceParent>,
    trace_id: TraceId,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    let root = if parent.is_some() {
        TraceId::INVALID
    } else {
        trace_id
    };
    trace_context::opening_with(root, || {
        let span = make();
        if let Some(parent) = parent {
            let _ = span.set_parent(
                Context::new()
                    .with_remote_span_context(parent.to_span_context(TraceState::default())),
            );
        }
        // Starts the OpenTelemetry span now, while the id generator can still see the trace id.
        record_ids(&span);
        span
    })
}

/// The span `make` builds when this work is traced: inside a sampled trace it is a child of the
/// current span; otherwise the head decision on `traceparent` decides, and an unsampled trace
/// (or a process that does not export) gets `None` and builds nothing.
pub fn traced(
    traceparent: Option<&str>,
    make: impl FnOnce() -> tracing::Span,
) -> Option<tracing::Span> {
    if !exporting() {
        return None;
    }
    if span_context(&tracing::Span::current()).is_valid() {
        let span = make();
        record_ids(&span);
        return Some(span);
    }
    traced_from(traceparent, make)
}

/// Like [`traced`], but `make`'s span continues `traceparent` whatever the current span is
/// (work that belongs to the trace it came with, like one entry of a batch).
pub fn traced_from(
    traceparent: Option<&str>,
    make: impl FnOnce() -> tracing::Span,
) -> Option<tracing::Span> {
    if !exporting() {
        return None;
    }
    match head(traceparent) {
        Head::Sampled { parent, trace_id } => Some(open(parent, trace_id, make)),
        Head::Unsampled(_) => None,
    }
}

/// Marks `span` failed with `error` as its description.
pub fn fail(span: &tracing::Span, error: &dyn std::fmt::Display) {
    span.set_status(Status::error(error.to_string()));
}

/// `version-traceid-parentid-flags` as a remote span context; `None` for anything malformed
/// (the W3C rule for a malformed header is to start a new trace, not to fail the request).
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    TraceParent::parse(value)
        .ok()
        .map(|parsed| parsed.to_span_context(TraceState::default()))
}

/// The `traceparent` of `context` (version 00).
pub fn format_traceparent(context: &SpanContext) -> String {
    TraceParent {
        trace_id: context.trace_id(),
        parent_id: context.span_id(),
        sampled: context.is_sampled(),
    }
    .to_string()
}

/// The OpenTelemetry span context of `span`; invalid when traces are not exported.
pub fn span_context(span: &tracing::Span) -> SpanContext {
    span.context().span().span_context().clone()
}

/// The `traceparent` naming `span` as the parent, when traces are exported.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    TraceParent::of(&span_context(span)).map(|parent| parent.to_string())
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
    fn the_head_decision_follows_a_callers_flag_and_samples_new_traces_by_default() {
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(
            head(Some(unsampled)),
            Head::Unsampled(TraceParent::parse(unsampled).unwrap())
        );
        let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let Head::Sampled { parent, trace_id } = head(Some(sampled)) else {
            panic!("a sampled caller is followed");
        };
        assert_eq!(parent, TraceParent::from_header(Some(sampled)));
        assert_eq!(trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let Head::Sampled {
            parent: None,
            trace_id,
        } = head(Some("garbage"))
        else {
            panic!("a new trace is sampled by the default sampler");
        };
        assert_ne!(trace_id, TraceId::INVALID);
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
