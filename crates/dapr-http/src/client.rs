//! The shared HTTP client: one connection pool to the sidecar, the API token on every call,
//! transport errors turned into [`DaprError::SidecarUnavailable`], and the outbound health probe.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::error::{Target, from_response};
use crate::settings::{DaprSettings, RetryPolicy, parse_endpoint};
use crate::{DaprError, spans};

/// How often `wait_for_sidecar` probes: short, because services block their start on it.
const HEALTH_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Idle connections kept per host; one sidecar is the only host. Consumers fan a batch out
/// into many concurrent state calls; every connection above this count is closed when its call
/// ends, so a burst past it costs a TCP handshake and leaves a TIME-WAIT socket on both ends per
/// call. It is sized above the fan-out the services allow themselves (audit-logger's 16
/// one-trail appends per batch, email-worker's send permits).
const POOL_MAX_IDLE: usize = 128;
/// How long an idle connection stays in the pool. Under load every pooled connection is
/// reused within milliseconds, so this only decides how long a burst's connections outlive it:
/// each holds buffers on both ends (about 20 KB in the local sidecar, plus the pages they keep
/// resident there), and reopening one to a sidecar on the same host costs a loopback handshake.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A cheap-to-clone handle on the Dapr sidecar's HTTP API.
#[derive(Clone)]
pub struct DaprClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    endpoint: String,
    api_token: Option<SecretString>,
    request_timeout: Duration,
    publish_retry: RetryPolicy,
}

impl std::fmt::Debug for DaprClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaprClient")
            .field("endpoint", &self.inner.endpoint)
            .field(
                "api_token",
                &self.inner.api_token.as_ref().map(|_| "[REDACTED]"),
            )
            .finish_non_exhaustive()
    }
}

impl DaprClient {
    /// Builds the client. Fails only on an unusable endpoint URL or TLS backend; the sidecar does
    /// not have to be up yet (see [`DaprClient::wait_for_sidecar`]).
    pub fn new(settings: DaprSettings) -> Result<Self, DaprError> {
        let base = parse_endpoint("DaprSettings::http_endpoint", settings.http_endpoint.trim())?;
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(DaprError::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                endpoint: base.as_str().trim_end_matches('/').to_owned(),
                base,
                api_token: settings.api_token,
                request_timeout: settings.request_timeout,
                publish_retry: settings.publish_retry,
            }),
        })
    }

    /// The sidecar base URL this client talks to (no trailing `/`).
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Waits until the sidecar answers `GET /v1.0/healthz/outbound` with 2xx, probing every
    /// 100 ms, for at most `deadline`.
    ///
    /// The outbound probe is used on purpose: `/v1.0/healthz` stays unhealthy until the app's own
    /// port accepts connections, so an app waiting on it before listening would deadlock.
    pub async fn wait_for_sidecar(&self, deadline: Duration) -> Result<(), DaprError> {
        let until = Instant::now() + deadline;
        let mut last = "no probe completed".to_owned();
        loop {
            let remaining = until.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let per_probe = remaining.min(self.inner.request_timeout);
            match self.probe(per_probe).await {
                Ok(()) => return Ok(()),
                Err(reason) => last = reason,
            }
            let remaining = until.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            tokio::time::sleep(HEALTH_POLL_INTERVAL.min(remaining)).await;
        }
        Err(DaprError::SidecarUnavailable {
            endpoint: self.inner.endpoint.clone(),
            reason: format!("not outbound-healthy within {deadline:?} (last probe: {last})"),
            source: None,
        })
    }

    /// One outbound-health probe: true when the sidecar's API and components are up.
    pub async fn is_ready(&self) -> bool {
        self.probe(self.inner.request_timeout).await.is_ok()
    }

    async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let url = self.url(&["v1.0", "healthz", "outbound"]);
        let response = self
            .request(Method::GET, url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("{e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    }

    pub(crate) fn publish_retry(&self) -> RetryPolicy {
        self.inner.publish_retry
    }

    /// The URL of an API path; each segment is percent-encoded (so `/`, `?`, `#` and spaces in
    /// names and keys cannot change the route).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request with the API token attached.
    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let builder = self.inner.http.request(method, url);
        match &self.inner.api_token {
            Some(token) => builder.header("dapr-api-token", token.expose_secret()),
            None => builder,
        }
    }

    /// Sends a request; transport failures become [`DaprError::SidecarUnavailable`] and non-2xx
    /// statuses typed errors. `operation` names the call's span (see [`DaprClient::send_traced`]).
    pub(crate) async fn send(
        &self,
        builder: RequestBuilder,
        target: Target<'_>,
        operation: &'static str,
    ) -> Result<Response, DaprError> {
        self.send_traced(builder, target, operation, None).await
    }

    /// [`DaprClient::send`] in a client span when the work is traced: the span is a child of
    /// the current span, or of `traceparent` when there is no current trace (work started for
    /// an earlier request, like the outbox relay, whose sampled flag then decides), and the
    /// request carries the span's own `traceparent` so the sidecar continues the trace under
    /// it. When nothing is exported or the trace is not sampled, `traceparent` is sent as it
    /// came and no span is made.
    pub(crate) async fn send_traced(
        &self,
        builder: RequestBuilder,
        target: Target<'_>,
        operation: &'static str,
        traceparent: Option<&str>,
    ) -> Result<Response, DaprError> {
        let component = match target {
            Target::Store(name) | Target::Pubsub(name) => name,
        };
        let span = spans::traced(traceparent, || {
            tracing::info_span!(
                "dapr",
                otel.name = format!("{operation} {component}"),
                otel.kind = "client",
                dapr.component = component,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            )
        });
        // Untraced (not exported, or not sampled), `traceparent` goes on as it came: the
        // request's head decision already cleared its sampled flag when it was not sampled.
        let Some(span) = span else {
            let builder = match traceparent {
                Some(traceparent) => builder.header("traceparent", traceparent),
                None => builder,
            };
            return self.exchange(builder, target).await;
        };
        let builder = match spans::traceparent_of(&span).as_deref().or(traceparent) {
            Some(traceparent) => builder.header("traceparent", traceparent),
            None => builder,
        };
        let result = self
            .exchange(builder, target)
            .instrument(span.clone())
            .await;
        if let Err(error) = &result {
            spans::fail(&span, error);
        }
        result
    }

    async fn exchange(
        &self,
        builder: RequestBuilder,
        target: Target<'_>,
    ) -> Result<Response, DaprError> {
        let response = builder
            .send()
            .await
            .map_err(|e| DaprError::unavailable(&self.inner.endpoint, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(from_response(status, &body, target))
    }

    /// Reads a whole response body, mapping transport errors.
    pub(crate) async fn body(&self, response: Response) -> Result<bytes::Bytes, DaprError> {
        response
            .bytes()
            .await
            .map_err(|e| DaprError::unavailable(&self.inner.endpoint, e))
    }

    /// `true` for 204 No Content.
    pub(crate) fn is_no_content(response: &Response) -> bool {
        response.status() == StatusCode::NO_CONTENT
    }
}
