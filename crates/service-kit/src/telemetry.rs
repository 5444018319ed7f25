//! Logging, trace export and metrics set-up.
//!
//! Logs go to stdout (JSON with `LOG_FORMAT=json`, the form log shippers want; human-readable
//! otherwise), filtered by `RUST_LOG`. When the OpenTelemetry variables name an endpoint
//! ([`crate::traces`]), spans are exported too, and each JSON line carries its span's `trace_id`
//! and `span_id`; the export has its own level (info), so a quieter `RUST_LOG` does not cut
//! traces short. Metrics use the `metrics` facade with one process-wide
//! Prometheus recorder: installing a global recorder twice fails, and tests build several
//! applications in one process, so the handle is created once and shared.

use std::sync::{Mutex, OnceLock, PoisonError};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::traces::{TraceExport, TraceExportError};

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("LOG_FORMAT must be `json` or `pretty`, not `{0}`")]
    LogFormat(String),
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(String),
    #[error("the Prometheus recorder could not be installed: {0}")]
    Recorder(String),
    #[error(transparent)]
    Traces(#[from] TraceExportError),
}

/// The process's trace export, once [`init_tracing`] started one.
static EXPORT: OnceLock<TraceExport> = OnceLock::new();

/// Initialises the global tracing subscriber for `service` (the default `service.name` of its
/// spans). Calling it again is harmless.
pub fn init_tracing(service: &str) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| TelemetryError::Filter(e.to_string()))?
        }
        _ => EnvFilter::new("info"),
    };
    let format = std::env::var("LOG_FORMAT").unwrap_or_else(|_| "pretty".to_owned());
    let json = match format.as_str() {
        "json" => true,
        "pretty" | "" => false,
        other => return Err(TelemetryError::LogFormat(other.to_owned())),
    };
    let export = match EXPORT.get() {
        Some(export) => Some(export.clone()),
        None => TraceExport::from_env(service)?,
    };
    let exporting = export.is_some();
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            // Once traces are exported the spans in scope are listed: the request, delivery and
            // client spans among them carry `trace_id` and `span_id`, whichever span is current.
            .with_current_span(false)
            .with_span_list(exporting)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .compact()
            .with_filter(filter)
            .boxed()
    };
    // Without an export there is no second layer at all, not even an empty one, so the spans
    // cost what they did before traces existed.
    let mut layers = vec![logs];
    if let Some(export) = &export {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(export.tracer("todo-services"))
                .with_filter(LevelFilter::INFO)
                .boxed(),
        );
    }
    // `try_init` fails only when a subscriber is already set (tests), which is fine to ignore.
    let installed = tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok();
    if let Some(export) = export
        && installed
    {
        let _ = EXPORT.set(export);
        dapr_http::spans::set_exporting(true);
        tracing::info!(service, "exporting traces over OTLP");
    }
    tracing::debug!(service, "tracing initialised");
    Ok(())
}

/// Exports the spans still queued and stops the export, if there is one: the last step of a
/// graceful stop. Blocks while it exports, so it runs on a blocking thread.
pub async fn flush_traces() {
    if let Some(export) = EXPORT.get().cloned() {
        let _ = tokio::task::spawn_blocking(move || export.shutdown()).await;
    }
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
