//! The admin token on `/audit/*`: `Authorization: Bearer <AUDIT_ADMIN_TOKEN>`, compared in
//! constant time; anything else is a 401 problem.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dapr_http::constant_time_eq;
use secrecy::ExposeSecret as _;
use service_kit::Problem;

use crate::context::AppState;

/// Axum middleware rejecting requests without the admin token.
pub async fn require_admin(State(ctx): State<AppState>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match given {
        None => Problem::unauthorized("an `Authorization: Bearer` admin token is required")
            .into_response(),
        Some(token)
            if constant_time_eq(token.as_bytes(), ctx.admin_token.expose_secret().as_bytes()) =>
        {
            next.run(request).await
        }
        Some(_) => Problem::unauthorized("the admin token is not valid").into_response(),
    }
}

/// The token of a `Bearer` credential (scheme case-insensitive).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
