//! Span and trace ids for the SDK, so a root span gets the trace id its head decision was taken
//! on: the decision ([`crate::Sampling`]) draws the id before any span exists, and the SDK's
//! tracer asks its id generator for a root's trace id only later, when it builds the span.

use std::cell::Cell;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::IdGenerator;

thread_local! {
    static OPENING: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Runs `start` (which builds a sampled span synchronously) with `trace_id` as the trace id a
/// new root gets ([`TraceId::INVALID`]: a random one, for a span that continues a parent).
pub fn opening_with<T>(trace_id: TraceId, start: impl FnOnce() -> T) -> T {
    struct Reset(Option<TraceId>);
    impl Drop for Reset {
        fn drop(&mut self) {
            OPENING.with(|opening| opening.set(self.0));
        }
    }
    let _reset = Reset(OPENING.with(|opening| opening.replace(Some(trace_id))));
    start()
}

/// `Some` while [`opening_with`] runs on this thread, with its trace id.
pub fn opening() -> Option<TraceId> {
    OPENING.with(Cell::get)
}

/// The SDK id generator that honours [`opening_with`]; random ids otherwise.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadIds;

impl IdGenerator for HeadIds {
    fn new_trace_id(&self) -> TraceId {
        match opening() {
            Some(trace_id) if trace_id != TraceId::INVALID => trace_id,
            _ => crate::new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        crate::new_span_id()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn roots_opened_with_a_trace_id_get_it_and_others_a_random_one() {
        let decided = crate::new_trace_id();
        assert_eq!(opening(), None);
        let inside = opening_with(decided, || (opening(), HeadIds.new_trace_id()));
        assert_eq!(inside, (Some(decided), decided));
        assert_eq!(opening(), None);
        assert_ne!(HeadIds.new_trace_id(), decided);
        let continuing = opening_with(TraceId::INVALID, || HeadIds.new_trace_id());
        assert_ne!(continuing, TraceId::INVALID);
        assert_ne!(HeadIds.new_span_id(), SpanId::INVALID);
    }
}
