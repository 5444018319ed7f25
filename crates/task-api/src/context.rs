//! Request correlation: every request gets a correlation id (the caller's `X-Correlation-Id`
//! when it is sane, a fresh UUID otherwise) that is echoed in the response and carried into
//! the `correlation_id` of every event the request causes. An incoming W3C `traceparent` is
//! kept and passed on to the publish call, so the sidecar continues the caller's trace (under
//! the request's own server span when traces are exported).

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::ApiError;

pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// What a request carries into the events it causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub correlation_id: String,
    pub traceparent: Option<String>,
}

impl RequestContext {
    /// Reads the correlation id and trace context from request headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let correlation_id = headers
            .get(&CORRELATION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|id| is_sane_id(id))
            .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
        let traceparent = headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|tp| is_traceparent(tp))
            .map(str::to_owned);
        Self {
            correlation_id,
            traceparent,
        }
    }
}

/// Printable ASCII without spaces, at most 128 characters: safe to log and echo.
fn is_sane_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A valid `traceparent` by the W3C rules (the shared reader in service-kit).
fn is_traceparent(value: &str) -> bool {
    service_kit::trace_context::is_traceparent(value)
}

/// Middleware: resolves the context once, stores it for handlers, echoes the correlation id.
pub async fn correlate(mut request: Request, next: Next) -> Response {
    let context = RequestContext::from_headers(request.headers());
    let header = HeaderValue::from_str(&context.correlation_id).ok();
    let span = tracing::info_span!("request", correlation_id = %context.correlation_id);
    request.extensions_mut().insert(context);
    let mut response = next.run(request).instrument(span).await;
    if let Some(header) = header {
        response.headers_mut().insert(CORRELATION_ID, header);
    }
    response
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    /// When traces are exported, the handler's own span (the request's server span) replaces
    /// the caller's `traceparent`, so the events the request causes are published under it.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut context = parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(|| RequestContext::from_headers(&parts.headers));
        if dapr_http::spans::exporting()
            && let Some(own) = dapr_http::spans::traceparent_of(&tracing::Span::current())
        {
            context.traceparent = Some(own);
        }
        Ok(context)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_correlation_id_and_generates_otherwise() {
        let mut headers = HeaderMap::new();
        headers.insert(CORRELATION_ID, HeaderValue::from_static("req-42"));
        assert_eq!(
            RequestContext::from_headers(&headers).correlation_id,
            "req-42"
        );
        headers.insert(CORRELATION_ID, HeaderValue::from_static("has space"));
        let generated = RequestContext::from_headers(&headers).correlation_id;
        assert!(Uuid::parse_str(&generated).is_ok());
    }

    #[test]
    fn traceparent_is_validated() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_traceparent(good));
        assert!(!is_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent("garbage"));
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(good));
        assert_eq!(
            RequestContext::from_headers(&headers)
                .traceparent
                .as_deref(),
            Some(good)
        );
    }
}
