//! Logging and metrics set-up.
//!
//! Logs go to stdout (JSON with `LOG_FORMAT=json`, the form log shippers want; human-readable
//! otherwise), filtered by `RUST_LOG`. Metrics use the `metrics` facade with one process-wide
//! Prometheus recorder: installing a global recorder twice fails, and tests build several
//! applications in one process, so the handle is created once and shared.

use std::sync::{Mutex, PoisonError};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("LOG_FORMAT must be `json` or `pretty`, not `{0}`")]
    LogFormat(String),
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(String),
    #[error("the Prometheus recorder could not be installed: {0}")]
    Recorder(String),
}

/// Initialises the global tracing subscriber for `service`. Calling it again is harmless.
pub fn init_tracing(service: &str) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| TelemetryError::Filter(e.to_string()))?
        }
        _ => EnvFilter::new("info"),
    };
    let format = std::env::var("LOG_FORMAT").unwrap_or_else(|_| "pretty".to_owned());
    let registry = tracing_subscriber::registry().with(filter);
    // `try_init` fails only when a subscriber is already set (tests), which is fine to ignore.
    let _ = match format.as_str() {
        "json" => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init(),
        "pretty" | "" => registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init(),
        other => return Err(TelemetryError::LogFormat(other.to_owned())),
    };
    tracing::debug!(service, "tracing initialised");
    Ok(())
}

static PROMETHEUS: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// The process-wide Prometheus handle, installing the recorder on first use.
pub fn prometheus() -> Result<PrometheusHandle, TelemetryError> {
    // Installing under the lock: with a check-then-install, a second thread racing the first
    // would fail to install (the global recorder is already set) before the first had stored
    // its handle, and get an error instead of the handle.
    let mut slot = PROMETHEUS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| TelemetryError::Recorder(e.to_string()))?;
    *slot = Some(handle.clone());
    Ok(handle)
}

/// `GET /metrics` in the Prometheus text format.
pub fn metrics_routes(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_first_calls_all_get_the_handle() {
        let threads: Vec<_> = (0..8).map(|_| std::thread::spawn(prometheus)).collect();
        for thread in threads {
            assert!(thread.join().unwrap().is_ok());
        }
        metrics::counter!("service_kit_test_total").increment(1);
        assert!(
            prometheus()
                .unwrap()
                .render()
                .contains("service_kit_test_total")
        );
    }
}
