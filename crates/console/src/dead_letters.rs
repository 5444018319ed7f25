//! Dead letters through audit-logger's admin API, called by Dapr service invocation on
//! audit-logger's own sidecar (`/v1.0/invoke/<app>/method/...`), with the admin token the run
//! file gives audit-logger. The console answers the upstream status and body as they came.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// Where audit-logger's API is reached.
#[derive(Clone)]
pub struct DeadLetterUpstream {
    /// audit-logger's app id; its sidecar is found among the run's instances.
    pub app_id: String,
    /// `AUDIT_ADMIN_TOKEN` of audit-logger's environment.
    pub admin_token: String,
    /// `DAPR_API_TOKEN`, when the sidecars require one.
    pub dapr_api_token: Option<String>,
}

impl std::fmt::Debug for DeadLetterUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tokens stay out of logs.
        f.debug_struct("DeadLetterUpstream")
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

impl DeadLetterUpstream {
    /// The invocation URL on a running instance's sidecar.
    fn url(&self, console: &crate::Console, method: &str) -> Option<String> {
        let port = console
            .inner
            .apps
            .apps()
            .into_iter()
            .find(|a| a.app_id == self.app_id && a.exit_status.is_none())?
            .http_port;
        Some(format!(
            "http://127.0.0.1:{port}/v1.0/invoke/{}/method/{method}",
            utf8_percent_encode(&self.app_id, NON_ALPHANUMERIC)
        ))
    }
}

/// `GET /audit/dead-letters` upstream (`query` passed on as it came).
pub(crate) async fn list(console: &crate::Console, query: Option<&str>) -> Response {
    let Some(upstream) = &console.inner.settings.dead_letters else {
        return not_configured();
    };
    let Some(mut url) = upstream.url(console, "audit/dead-letters") else {
        return not_running(upstream);
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    call(console, upstream, console.inner.client.get(url)).await
}

/// `POST /audit/dead-letters/{event_id}/replay` upstream.
pub(crate) async fn replay(console: &crate::Console, event_id: &str) -> Response {
    let Some(upstream) = &console.inner.settings.dead_letters else {
        return not_configured();
    };
    let id = utf8_percent_encode(event_id, NON_ALPHANUMERIC);
    let Some(url) = upstream.url(console, &format!("audit/dead-letters/{id}/replay")) else {
        return not_running(upstream);
    };
    call(console, upstream, console.inner.client.post(url)).await
}

async fn call(
    console: &crate::Console,
    upstream: &DeadLetterUpstream,
    mut request: reqwest::RequestBuilder,
) -> Response {
    request = request.bearer_auth(&upstream.admin_token);
    if let Some(token) = &upstream.dapr_api_token {
        request = request.header("dapr-api-token", token);
    }
    let limit = console.inner.settings.limits.upstream_body_bytes;
    let response = match request.send().await {
        Ok(r) => r,
        Err(error) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("audit-logger's API cannot be reached: {error}"),
            )
                .into_response();
        }
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return (
            StatusCode::BAD_GATEWAY,
            format!("audit-logger's answer is larger than the console's limit of {limit} bytes"),
        )
            .into_response();
    }
    let body = match response.bytes().await {
        Ok(b) if b.len() <= limit => b,
        Ok(_) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!(
                    "audit-logger's answer is larger than the console's limit of {limit} bytes"
                ),
            )
                .into_response();
        }
        Err(error) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("audit-logger's answer broke off: {error}"),
            )
                .into_response();
        }
    };
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    if let Some(ct) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    out
}

fn not_configured() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "no audit-logger in this run (an app with AUDIT_ADMIN_TOKEN in its env)",
    )
        .into_response()
}

fn not_running(upstream: &DeadLetterUpstream) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{} is not running", upstream.app_id),
    )
        .into_response()
}
