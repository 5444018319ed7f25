//! The HTTP surface every service shares, wrapped around the service's own routes:
//! `/healthz`, `/readyz`, `/metrics`, problem+json answers for unknown routes and methods, the
//! body limit, a request id, and a request span that records the caller's W3C `traceparent`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use dapr_http::DaprClient;
use dapr_http::spans::Head;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, OnResponse as _, TraceLayer};
use trace_context::TraceParent;

use crate::trace_context::{REQUEST_ID, TRACEPARENT, traceparent};
use crate::{CommonSettings, Problem, TelemetryError, health_routes, metrics_routes, prometheus};

/// `routes` plus everything a service answers besides its own job. Layers added by the caller
/// afterwards wrap all of it, the shared routes and fallbacks included.
pub fn service_router(
    routes: Router,
    common: &CommonSettings,
    dapr: DaprClient,
) -> Result<Router, TelemetryError> {
    let limit = common.max_body_size;
    let routes = routes
        .merge(health_routes(dapr))
        .merge(metrics_routes(prometheus()?))
        .fallback(|| async { Problem::not_found("no such route").into_response() })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed().into_response() })
        // Extractors read the limit from here; without it axum would apply its own 2 MiB.
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(limit, limit_body))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(record_response),
        );
    // Only a process that exports traces decides on sampling (`init_tracing` runs before the
    // router is built): with tracing off a request passes no extra layer.
    let routes = if dapr_http::spans::exporting() {
        routes.layer(middleware::map_request(decide_head))
    } else {
        routes
    };
    Ok(routes
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid)))
}

/// Refuses a declared oversized body at once and caps an undeclared (chunked) one while it is
/// read, whatever extractor or handler reads it: a route-level `DefaultBodyLimit` (the
/// subscription router sets daprd's 4 MiB) cannot raise it. An extractor's own plain-text 413 is
/// answered as the same problem.
async fn limit_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Problem::payload_too_large(limit).into_response();
    }
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    let response = next.run(request).await;
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == crate::PROBLEM_JSON.as_bytes());
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_problem {
        return Problem::payload_too_large(limit).into_response();
    }
    response
}

/// Probes and scrapes would each be a trace of their own, every few seconds; daprd leaves its
/// health checks out of its traces too (`pkg/diagnostics/http_tracing.go`).
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// When traces are exported, takes the request's head sampling decision before any span exists
/// and leaves it in the request's extensions for [`request_span`]. An unsampled request's
/// `traceparent` becomes the context it passes on (a new trace's, or the caller's with the
/// sampled flag cleared), so handlers forward the decision as they forward the header.
async fn decide_head(mut request: Request) -> Request {
    if is_probe(request.uri().path()) {
        return request;
    }
    let incoming = traceparent(request.headers());
    let head = dapr_http::spans::head(incoming);
    if let Head::Unsampled(context) = head
        && TraceParent::from_header(incoming) != Some(context)
        && let Ok(value) = HeaderValue::from_str(&context.to_string())
    {
        request.headers_mut().insert(TRACEPARENT, value);
    }
    request.extensions_mut().insert(head);
    request
}

/// The span every request runs in: method, path, request id and, when the caller sent a valid
/// one, its `traceparent`, so a service's log lines join the caller's trace. When the request's
/// trace is sampled it is also the request's server span, continuing that `traceparent`; when
/// it is not, the log span carries the trace id the request passes on.
fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let incoming = traceparent(request.headers());
    let (method, path) = (request.method().as_str(), request.uri().path());
    let Some(&Head::Sampled { parent, trace_id }) = request.extensions().get::<Head>() else {
        let span = tracing::info_span!(
            "http",
            method,
            path,
            request_id,
            traceparent = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        if let Some(traceparent) = incoming {
            span.record("traceparent", traceparent);
        }
        if let Some(Head::Unsampled(context)) = request.extensions().get::<Head>() {
            span.record("trace_id", tracing::field::display(context.trace_id));
        }
        return span;
    };
    dapr_http::spans::open(parent, trace_id, || {
        tracing::info_span!(
            "http",
            otel.name = format!("{method} {path}"),
            otel.kind = "server",
            http.request.method = method,
            url.path = path,
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            request_id,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        )
    })
}

/// Records the status on the request's server span (a 5xx marks it failed), then logs as the
/// default does.
fn record_response(response: &Response, latency: Duration, span: &tracing::Span) {
    if dapr_http::spans::exporting() {
        span.record("http.response.status_code", response.status().as_u16());
        if response.status().is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
    DefaultOnResponse::default().on_response(response, latency, span);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn router(limit: usize) -> Router {
        let mut common: CommonSettings = crate::load_settings_from(
            "app_port = 0\napp_id = \"t\"\nmax_body_size = 8\n",
            std::iter::empty(),
        )
        .unwrap();
        common.max_body_size = limit;
        let dapr = DaprClient::new(common.dapr.clone()).unwrap();
        let echo = Router::new().route("/echo", post(|body: Bytes| async move { body }));
        service_router(echo, &common, dapr).unwrap()
    }

    async fn send(
        router: Router,
        request: Request,
    ) -> (StatusCode, Vec<u8>, axum::http::HeaderMap) {
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body.to_vec(), headers)
    }

    fn post_to(path: &str, body: &'static str) -> Request {
        Request::post(path)
            .header(CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_a_problem_whether_declared_or_streamed() {
        let declared = post_to("/echo", "123456789");
        let streamed = Request::post("/echo")
            .body(chunked(vec!["12345", "6789"]))
            .unwrap();
        for request in [declared, streamed] {
            let (status, body, _) = send(router(8), request).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["type"], "urn:todo:problem:payload-too-large");
        }
        let (status, body, _) = send(router(8), post_to("/echo", "12345678")).await;
        assert_eq!(
            (status, body.as_slice()),
            (StatusCode::OK, &b"12345678"[..])
        );
    }

    /// A body sent in chunks, without a declared length.
    fn chunked(chunks: Vec<&'static str>) -> Body {
        Body::from_stream(futures::stream::iter(
            chunks.into_iter().map(Ok::<_, std::io::Error>),
        ))
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_are_problems_and_every_answer_has_a_request_id() {
        let (status, body, headers) = send(
            router(8),
            Request::get("/nope").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers["content-type"], crate::PROBLEM_JSON);
        assert!(String::from_utf8_lossy(&body).contains("not-found"));
        assert!(headers.contains_key(&REQUEST_ID));

        let (status, _, headers) = send(
            router(8),
            Request::get("/echo").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers["content-type"], crate::PROBLEM_JSON);

        let request = Request::get("/healthz")
            .header(&REQUEST_ID, "caller-42")
            .body(Body::empty())
            .unwrap();
        let (status, _, headers) = send(router(8), request).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(headers[&REQUEST_ID], "caller-42");
    }
}
