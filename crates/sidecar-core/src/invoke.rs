//! Service invocation: `/v1.0/invoke/{app-id}/method/{method}` to any app of the same runtime.
//!
//! The request goes straight to the target app's channel (one process hosts every sidecar, so the
//! sidecar-to-sidecar hop is skipped). Verb, query, headers and body pass through; the target's
//! status, headers and body come back unchanged. The caller's `dapr-api-token` was already
//! removed by the token check; the target's app token is added when configured.
//!
//! The target's access control ([`crate::acl`]) is checked first, as the called app's sidecar
//! does in daprd (`pkg/api/grpc/daprinternal.go` `callLocalValidateACL`): a denied call is 403
//! `ERR_DIRECT_INVOKE` (`pkg/api/http/directmessaging.go` maps the callee's `PermissionDenied`
//! to 403). Invoking one's own app is not checked.
//!
//! Limits, as daprd answers them (500 `ERR_DIRECT_INVOKE`, `failed to invoke, id: <app>, err:
//! <cause>`):
//! * The response body may be at most the caller's `--max-body-size`: daprd reads the app's
//!   response through `streams.LimitReadCloser` with that size (pkg/channel/http/http_channel.go,
//!   dapr/kit `streams`), failing with `stream too large`.
//! * Each attempt has a deadline: the resiliency timeout of the target app
//!   (`spec.targets.apps.<app-id>.timeout`, else a `DefaultAppTimeoutPolicy` or
//!   `DefaultTimeoutPolicy` named timeout; <https://docs.dapr.io/operations/resiliency/policies/>),
//!   failing with `context deadline exceeded`. Without one daprd waits indefinitely; this sidecar
//!   stops after [`DEFAULT_INVOKE_TIMEOUT`], so a hung app cannot pin requests and their buffers.
//!
//! Resiliency is the calling sidecar's (`pkg/api/http/directmessaging.go`): the target app's
//! policy retries answers outside 200-399 (subject to `matching`) and transport errors, and the
//! caller finally gets the app's last answer; its breaker is one per target app and method, and
//! while open the call fails with `ERR_DIRECT_INVOKE` `circuit breaker is open`.

use crate::api::ApiError;
use crate::sidecar::SidecarState;
use crate::tokens::TOKEN_HEADER;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use resiliency::{ErrorClass, Failure};
use std::sync::Arc;
use std::time::Duration;

/// Deadline of an invocation no resiliency timeout covers (a local-sidecar limit).
pub const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

/// One attempt that did not succeed: the app's answer outside 200-399 (given back to the caller
/// when the policy gives up), or no answer at all.
enum Attempt {
    Answer((StatusCode, HeaderMap, Bytes)),
    Call(CallError),
}

/// Why a call failed once the app was reached.
enum CallError {
    Http(reqwest::Error),
    TooLarge,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(e) => e.fmt(f),
            // dapr/kit streams.ErrStreamTooLarge.
            Self::TooLarge => f.write_str("stream too large"),
        }
    }
}

/// Reads the whole body, failing as soon as it exceeds `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Bytes, CallError> {
    if response
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
    {
        return Err(CallError::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(CallError::Http)? {
        if body.len() + chunk.len() > limit {
            return Err(CallError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
/// Connection-level headers that must not be forwarded.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "host"
            | "content-length"
    )
}

fn invoke_error(app_id: &str, cause: impl std::fmt::Display) -> ApiError {
    ApiError::legacy(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_DIRECT_INVOKE",
        format!("failed to invoke, id: {app_id}, err: {cause}"),
    )
}

/// Axum handler for every verb.
pub async fn invoke(
    State(state): State<Arc<SidecarState>>,
    Path((app_id, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    uri: Uri,
    verb: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(target) = state.runtime.resolve_app(&app_id) else {
        return Err(invoke_error(
            &app_id,
            format!("couldn't find service: {app_id}"),
        ));
    };
    if let Some(acl) = &target.access_control
        && app_id != state.app_id()
    {
        let caller_domain = state
            .opts
            .access_control
            .as_ref()
            .map_or(crate::acl::DEFAULT_TRUST_DOMAIN, |a| a.trust_domain());
        let namespace = crate::acl::DEFAULT_NAMESPACE;
        let caller = state.app_id();
        if !acl.allows(caller, caller_domain, namespace, verb.as_str(), &method) {
            tracing::debug!(%caller, callee = %app_id, %method, %verb, "invocation denied by access control");
            return Err(ApiError::legacy(
                StatusCode::FORBIDDEN,
                "ERR_DIRECT_INVOKE",
                format!(
                    "failed to invoke, id: {app_id}, err: rpc error: code = PermissionDenied desc = access control policy has denied access to id: spiffe://{caller_domain}/ns/{namespace}/{caller} operation: {method} verb: {verb}"
                ),
            ));
        }
    }
    // The target's sidecar answers for an app its health checks found unhealthy.
    if !*target.healthy.borrow() {
        return Err(invoke_error(&app_id, "app is not in a healthy state"));
    }
    // Forward the method exactly as the caller encoded it (the decoded form may not be a valid
    // URL path, e.g. with spaces).
    let raw_method = uri
        .path()
        .split_once("/method/")
        .map_or(method.as_str(), |(_, m)| m);
    let mut url = format!(
        "http://{}/{}",
        target.addr,
        raw_method.trim_start_matches('/')
    );
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(&q);
    }
    let mut out_headers = reqwest::header::HeaderMap::new();
    for (name, value) in &headers {
        if !hop_by_hop(name) && name != TOKEN_HEADER {
            out_headers.append(name.clone(), value.clone());
        }
    }
    if let Ok(v) = state.app_id().parse() {
        out_headers.insert("dapr-caller-app-id", v);
    }
    if let Ok(v) = app_id.parse() {
        out_headers.insert("dapr-callee-app-id", v);
    }
    if let Some(v) = target.app_api_token.as_deref().and_then(|t| t.parse().ok()) {
        out_headers.insert(TOKEN_HEADER, v);
    }
    let limit = state.opts.max_body_size;
    let client = &state.client;
    let attempt = || {
        let request = client
            .request(verb.clone(), &url)
            .headers(out_headers.clone())
            .body(body.clone());
        async move {
            let response = request
                .send()
                .await
                .map_err(|e| Attempt::Call(CallError::Http(e)))?;
            let status = response.status();
            let mut resp_headers = HeaderMap::new();
            for (name, value) in response.headers() {
                if !hop_by_hop(name) {
                    resp_headers.append(name.clone(), value.clone());
                }
            }
            let bytes = read_limited(response, limit).await.map_err(Attempt::Call)?;
            let answer = (status, resp_headers, bytes);
            // daprd's direct messaging turns an answer outside 200-399 into a `CodeError`, which
            // the app's retry policy retries subject to `matching`.
            if (200..400).contains(&status.as_u16()) {
                Ok(answer)
            } else {
                Err(Attempt::Answer(answer))
            }
        }
    };
    let mut runner = state.policies.invoke(&app_id, &method);
    if runner.timeout.is_none() {
        runner.timeout = Some(DEFAULT_INVOKE_TIMEOUT);
    }
    let classify = |e: &Attempt| match e {
        Attempt::Answer((status, _, _)) => ErrorClass::Status(status.as_u16()),
        Attempt::Call(_) => ErrorClass::Retriable,
    };
    let (status, mut resp_headers, bytes) =
        match runner.run(attempt, classify, Some(&state.shutdown)).await {
            Ok(answer) | Err(Failure::Op(Attempt::Answer(answer))) => answer,
            Err(Failure::Op(Attempt::Call(e))) => return Err(invoke_error(&app_id, e)),
            // The text of Go's context.DeadlineExceeded, as daprd reports it.
            Err(Failure::Timeout(_)) => {
                return Err(invoke_error(&app_id, "context deadline exceeded"));
            }
            Err(Failure::Rejected(r)) => return Err(invoke_error(&app_id, r)),
        };
    tracing::debug!(caller = %state.app_id(), callee = %app_id, %method, %status, "invoked");
    if !resp_headers.contains_key(header::CONTENT_TYPE) && !bytes.is_empty() {
        resp_headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/octet-stream"),
        );
    }
    Ok((status, resp_headers, Body::from(bytes)).into_response())
}
