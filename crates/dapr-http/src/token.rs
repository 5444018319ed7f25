//! The app API token check: daprd sends `dapr-api-token: <APP_API_TOKEN>` on `/dapr/subscribe`
//! and on every delivery; without the right one, anyone on the network could inject events.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

/// The header daprd uses for the app API token.
pub(crate) const TOKEN_HEADER: &str = "dapr-api-token";

/// Checks the app API token; `Err` is the 401 to send.
#[allow(clippy::result_large_err)]
pub(crate) fn check_token(
    expected: Option<&SecretString>,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let given = headers
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if constant_time_eq(expected.expose_secret().as_bytes(), given) {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, "invalid api token").into_response())
    }
}

/// Compares two secrets without an early exit: both are hashed first so neither the length nor
/// the position of the first differing byte shows in the timing. Services use it for their own
/// bearer tokens too, so there is one comparison to get right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokex"));
        assert!(!constant_time_eq(b"token", b"token "));
        assert!(!constant_time_eq(b"token", b""));
        assert!(constant_time_eq(b"", b""));
    }
}
