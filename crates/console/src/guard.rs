//! The console's guard: a token on every request when one is configured (the runner configures
//! one whenever the console listens beyond loopback); without one, only requests naming a
//! loopback host; the `X-Console-Action` header on the one write (replay); and security headers
//! on every answer: the page's Content-Security-Policy, `nosniff`, no referrer, no framing by
//! other sites.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// The policy the page is written for: only its own scripts, styles and frames; images inline.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-src 'self'; img-src 'self' data:";

/// The header a replay must carry; a cross-site form cannot set it, so it guards against CSRF.
pub const ACTION_HEADER: &str = "x-console-action";

/// Rejects requests without the configured token, then adds the security headers.
pub(crate) async fn guard(
    State(console): State<crate::Console>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &console.inner.settings.token
        && !authorized(token, &request)
    {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            "the console needs its token: `Authorization: Bearer <token>` or `?token=<token>`",
        )
            .into_response();
        secure(&mut response);
        return response;
    }
    if console.inner.settings.token.is_none() && !loopback_host(&request) {
        let mut response = (
            StatusCode::FORBIDDEN,
            "the console answers only requests to localhost, 127.0.0.1 or [::1]",
        )
            .into_response();
        secure(&mut response);
        return response;
    }
    let mut response = next.run(request).await;
    secure(&mut response);
    response
}

/// True unless the request names a host other than loopback. Without a token, the loopback
/// listener is the only guard, and a site whose name an attacker rebinds to 127.0.0.1 (DNS
/// rebinding) reaches it from the user's browser with its own name in `Host`: such requests
/// are refused. A request with no `Host` at all comes from no browser and is let through.
fn loopback_host(request: &Request) -> bool {
    let Some(host) = request.headers().get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or("", |(name, _)| name),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn authorized(token: &str, request: &Request) -> bool {
    // Exporters of the run (on this machine) cannot send the token: OTLP from loopback is let in.
    if request.uri().path() == "/v1/traces"
        && request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            // A dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1.
            .is_some_and(|ConnectInfo(peer)| peer.ip().to_canonical().is_loopback())
    {
        return true;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = request.uri().query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == "token").then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    });
    bearer.is_some_and(|b| same(b, token)) || query.is_some_and(|q| same(&q, token))
}

/// Compares without leaking where the first difference is.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
