//! API token check (`DAPR_API_TOKEN`): every call must carry `dapr-api-token` with the exact
//! value, except `GET /v1.0/healthz` and `GET /v1.0/healthz/outbound`. The header is removed
//! before the request is handled, so it never reaches an invoked app.

use crate::sidecar::SidecarState;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Header carrying API tokens in both directions.
pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("dapr-api-token");

/// Paths served without a token.
pub fn is_exempt(path: &str) -> bool {
    matches!(path, "/v1.0/healthz" | "/v1.0/healthz/outbound")
}

/// Compares without an early exit on the first differing byte.
pub fn token_matches(expected: &str, given: &[u8]) -> bool {
    let expected = expected.as_bytes();
    if expected.len() != given.len() {
        return false;
    }
    expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Axum middleware enforcing the API token.
pub async fn check_api_token(
    State(state): State<Arc<SidecarState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &state.opts.api_token
        && !is_exempt(req.uri().path())
    {
        let ok = req
            .headers()
            .get(&TOKEN_HEADER)
            .is_some_and(|v| token_matches(expected, v.as_bytes()));
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "invalid api token",
            )
                .into_response();
        }
    }
    req.headers_mut().remove(&TOKEN_HEADER);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_healthz_endpoints_are_exempt() {
        assert!(is_exempt("/v1.0/healthz"));
        assert!(is_exempt("/v1.0/healthz/outbound"));
        assert!(!is_exempt("/v1.0/metadata"));
        assert!(!is_exempt("/v1.0/publish/p/t"));
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("s3cret", b"s3cret"));
        assert!(!token_matches("s3cret", b"s3cret "));
        assert!(!token_matches("s3cret", b"S3cret"));
        assert!(!token_matches("s3cret", b""));
    }
}
