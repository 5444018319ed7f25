//! Trace export over OTLP, configured only by the standard OpenTelemetry variables
//! (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>).
//!
//! * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or `OTEL_EXPORTER_OTLP_ENDPOINT` (a base
//!   URL, `/v1/traces` appended): where spans go, over HTTP/protobuf. With neither set nothing is
//!   exported and no OpenTelemetry layer is installed, so the spans cost what they did before.
//! * `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`: the resource (the service name defaults
//!   to the app id); `OTEL_BSP_*`: the batch processor. The SDK reads these itself.
//! * `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`: the sampler (parent-based always-on by
//!   default). It is applied at the head, by [`dapr_http::spans::head`], before any span is
//!   built, rather than by the SDK once the span data exists: the SDK's sampler is always-on and
//!   only ever sees spans of sampled traces, and the id generator gives a new root the trace id
//!   the head decision was taken on, so every process deciding by ratio agrees.
//!
//! Spans are exported in batches from a thread of the SDK's own; [`TraceExport::shutdown`]
//! flushes what is queued, which a graceful stop must call before the process exits.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use trace_context::{HeadIds, Sampling, SamplingError};

/// The variables that turn export on, in the order the exporter prefers them.
pub const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceExportError {
    #[error("{var} must be an http:// or https:// URL, not `{value}`")]
    Endpoint { var: &'static str, value: String },
    #[error("the OTLP span exporter could not be built: {0}")]
    Exporter(String),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
}

/// The running export: a tracer provider whose batch processor owns the exporter.
#[derive(Debug, Clone)]
pub struct TraceExport {
    provider: SdkTracerProvider,
    sampling: Sampling,
}

impl TraceExport {
    /// Builds the export when an endpoint variable is set; `Ok(None)` when none is.
    pub fn from_env(default_service_name: &str) -> Result<Option<Self>, TraceExportError> {
        let Some((var, endpoint)) = configured_endpoint() else {
            return Ok(None);
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(TraceExportError::Endpoint {
                var,
                value: endpoint,
            });
        }
        let sampling = Sampling::from_env_values(
            std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
            std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
        )?;
        // The exporter reads the endpoint variables itself (and appends `/v1/traces` to the
        // generic one); only the validation above is ours.
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|e| TraceExportError::Exporter(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(default_service_name))
            .with_sampler(Sampler::AlwaysOn)
            .with_id_generator(HeadIds)
            .build();
        Ok(Some(Self { provider, sampling }))
    }

    /// The head sampler the OpenTelemetry variables name.
    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// A tracer of this export, for the `tracing` layer.
    pub fn tracer(&self, scope: &'static str) -> opentelemetry_sdk::trace::SdkTracer {
        self.provider.tracer(scope)
    }

    /// Exports every span still queued and stops the exporter. Blocks while it exports: call it
    /// from a blocking context (`spawn_blocking`) in async code.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "traces could not all be exported at shutdown");
        }
    }
}

/// The first endpoint variable set to something other than blanks.
fn configured_endpoint() -> Option<(&'static str, String)> {
    ENDPOINT_VARS.iter().find_map(|var| {
        let value = std::env::var(var).ok()?;
        let value = value.trim();
        (!value.is_empty()).then(|| (*var, value.to_owned()))
    })
}

/// The SDK's resource (which reads `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`), named
/// after the app when neither variable names the service.
fn resource(default_service_name: &str) -> Resource {
    let named_by_env = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| {
            v.split(',')
                .any(|kv| kv.trim().starts_with("service.name="))
        });
    let builder = Resource::builder();
    if named_by_env {
        builder.build()
    } else {
        builder
            .with_service_name(default_service_name.to_owned())
            .build()
    }
}
