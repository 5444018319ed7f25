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
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
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
                .with_filter(SampledTraces)
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
        dapr_http::spans::set_sampling(export.sampling());
        let _ = EXPORT.set(export);
        dapr_http::spans::set_exporting(true);
        tracing::info!(service, "exporting traces over OTLP");
    }
    tracing::debug!(service, "tracing initialised");
    Ok(())
}

/// The exporting layer's filter: spans and events of info and above, and only those of sampled
/// traces: the roots [`dapr_http::spans::open`] starts after a head decision sampled them, and
/// whatever happens inside one. Everything else never reaches the OpenTelemetry layer, so an
/// unsampled trace builds no span data at all.
struct SampledTraces;

impl<S> Filter<S> for SampledTraces
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, metadata: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        // `cx` is scoped to this filter: the current span it finds is one this filter let in.
        *metadata.level() <= Level::INFO
            && (dapr_http::spans::opening().is_some() || cx.lookup_current().is_some())
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        // The answer depends on the trace at hand, so it cannot be cached per call site.
        if *metadata.level() <= Level::INFO {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }
}

/// Exports the spans still queued and stops the export, if there is one: the last step of a
/// graceful stop. Blocks while it exports, so it runs on a blocking thread.
pub async fn flush_traces() {
    if let Some(export) = EXPORT.get().cloned() {
        let _ = tokio::task::spawn_blocking(move || export.shutdown()).await;
    }
}

static PROMETHEUS: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Upper bounds of the buckets of every histogram named `…_seconds`: from half a millisecond
/// (a create through the sidecar takes about one) to Prometheus' usual 10 s.
const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the buckets of every other histogram: they count things (e.g.
/// `task_api_list_summaries_read`).
const COUNT_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// The process-wide Prometheus handle, installing the recorder on first use.
pub fn prometheus() -> Result<PrometheusHandle, TelemetryError> {
    // Installing under the lock: with a check-then-install, a second thread racing the first
    // would fail to install (the global recorder is already set) before the first had stored
    // its handle, and get an error instead of the handle.
    let mut slot = PROMETHEUS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    // Histograms, not the exporter's default summaries: each service scales to several
    // replicas, and only buckets add up across them (`sum by (le) (rate(…_bucket[5m]))`); a
    // summary's quantiles are each replica's own. A summary also merges its rolling sketches
    // and computes every quantile on each scrape, which cost the audit-logger an eighth of its
    // instructions when scraped every 100 ms (`scripts/profile.sh`).
    let recorder =
        |e: metrics_exporter_prometheus::BuildError| TelemetryError::Recorder(e.to_string());
    let handle = PrometheusBuilder::new()
        .set_buckets(&COUNT_BUCKETS)
        .map_err(recorder)?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
        .map_err(recorder)?
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
    use std::sync::Arc;
    use std::time::Duration;

    use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};

    /// Every span the SDK ends, i.e. every span that would be exported.
    #[derive(Debug, Clone, Default)]
    struct Ended(Arc<Mutex<Vec<SpanData>>>);

    impl SpanProcessor for Ended {
        fn on_start(
            &self,
            _span: &mut opentelemetry_sdk::trace::Span,
            _cx: &opentelemetry::Context,
        ) {
        }
        fn on_end(&self, span: SpanData) {
            self.0.lock().unwrap().push(span);
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    #[test]
    fn only_spans_of_sampled_traces_reach_the_exporting_layer() {
        let ended = Ended::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(ended.clone())
            .with_id_generator(trace_context::HeadIds)
            .build();
        let subscriber = tracing_subscriber::registry().with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("test"))
                .with_filter(SampledTraces),
        );
        let decided = trace_context::new_trace_id();
        tracing::subscriber::with_default(subscriber, || {
            // Outside a sampled trace, spans and everything in them stay out of the export.
            let plain = tracing::info_span!("unsampled request");
            plain.in_scope(|| {
                let inner = tracing::info_span!("inner");
                assert!(!dapr_http::spans::span_context(&inner).is_valid());
                tracing::info!("a log line");
            });
            assert!(!dapr_http::spans::span_context(&plain).is_valid());
            drop(plain);
            assert!(ended.0.lock().unwrap().is_empty());

            // A root opened after a sampled decision is exported with the decided trace id,
            // and so is what happens inside it (debug spans excepted).
            let root = dapr_http::spans::open(None, decided, || tracing::info_span!("root"));
            root.in_scope(|| {
                let _child = tracing::info_span!("child");
                let _verbose = tracing::debug_span!("verbose");
            });
            drop(root);
        });
        let ended = ended.0.lock().unwrap();
        let names: Vec<&str> = ended.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["child", "root"]);
        let (child, root) = (&ended[0], &ended[1]);
        assert_eq!(root.span_context.trace_id(), decided);
        assert_eq!(root.parent_span_id, SpanId::INVALID);
        assert_eq!(child.span_context.trace_id(), decided);
        assert_eq!(child.parent_span_id, root.span_context.span_id());
        assert_ne!(decided, TraceId::INVALID);
    }

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod histogram_tests {
    use super::prometheus;

    /// Histograms render as Prometheus histograms (buckets, sum, count), which a query can add
    /// up across replicas; a summary's quantiles cannot be, and cost a sketch merge per scrape.
    #[test]
    fn histograms_render_as_buckets_that_replicas_can_be_summed_over() {
        let handle = prometheus().unwrap();
        metrics::histogram!("service_kit_test_wait_seconds").record(0.0007);
        metrics::histogram!("service_kit_test_wait_seconds").record(0.3);
        metrics::histogram!("service_kit_test_items_read").record(7.0);
        let page = handle.render();
        let line = |prefix: &str| {
            page.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no line `{prefix}…` in:\n{page}"))
                .to_owned()
        };
        assert!(line("service_kit_test_wait_seconds_bucket{le=\"0.001\"}").ends_with(" 1"));
        assert!(line("service_kit_test_wait_seconds_bucket{le=\"0.5\"}").ends_with(" 2"));
        assert!(line("service_kit_test_wait_seconds_bucket{le=\"+Inf\"}").ends_with(" 2"));
        assert!(line("service_kit_test_wait_seconds_count").ends_with(" 2"));
        // A histogram that counts things, not seconds, gets buckets of counts.
        assert!(line("service_kit_test_items_read_bucket{le=\"5\"}").ends_with(" 0"));
        assert!(line("service_kit_test_items_read_bucket{le=\"10\"}").ends_with(" 1"));
        assert!(!page.contains("quantile="), "a summary in:\n{page}");
    }
}
