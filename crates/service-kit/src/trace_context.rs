//! The request headers that tie a request to others: the request id every response echoes, and
//! the W3C trace context (`traceparent`, <https://www.w3.org/TR/trace-context/#traceparent-header>)
//! a caller or the sidecar sends, which daprd continues when it comes back on a publish
//! (see <https://docs.dapr.io/operations/observability/tracing/w3c-tracing-overview/>).

use axum::http::{HeaderMap, HeaderName};

/// Set on every request that lacks one, and echoed on its response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C trace context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The request's `traceparent`, when it is well formed; anything else is ignored (the W3C rule
/// for a malformed header is to start a new trace, not to fail the request).
pub fn traceparent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(&TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| is_traceparent(value))
}

/// Whether `value` is a valid `traceparent` by the W3C rules ([`trace_context::TraceParent`]).
pub fn is_traceparent(value: &str) -> bool {
    trace_context::TraceParent::parse(value).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_well_formed_trace_contexts_are_taken() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_traceparent(good));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert!(!is_traceparent(bad), "{bad}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(good));
        assert_eq!(traceparent(&headers), Some(good));
        headers.insert(TRACEPARENT, HeaderValue::from_static("nope"));
        assert_eq!(traceparent(&headers), None);
    }
}
