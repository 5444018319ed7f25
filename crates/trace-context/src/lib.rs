//! W3C trace context (<https://www.w3.org/TR/trace-context/>), in one place for the services and
//! the sidecar: the `traceparent` header read and written by the spec's rules ([`TraceParent`]),
//! `tracestate` passed through as the spec asks of a participant that adds no entry of its own
//! ([`tracestate`]), and the head sampling decision ([`Sampling`]) taken before any span data is
//! built, so a trace that is not sampled costs its ids and nothing more; [`HeadIds`] gives a
//! sampled root the trace id its decision was taken on.

mod ids;
mod sampling;
mod traceparent;

pub use ids::{HeadIds, opening, opening_with};
pub use sampling::{Sampling, SamplingError};
pub use traceparent::{TraceParent, TraceParentError, new_span_id, new_trace_id, tracestate};
