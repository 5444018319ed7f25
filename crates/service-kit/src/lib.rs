//! The one service skeleton: what every task service shares, so each service's code is about its
//! own job.
//!
//! * [`CommonSettings`] (`APP_HOST`, `APP_PORT`, `APP_ID`, component names, tokens, body limit,
//!   the sidecar's address), flattened into each service's settings and loaded once through the
//!   layered loader ([`LayeredSettings`]: defaults < `CONFIG_FILE` < environment).
//! * [`Service`]: `build(settings, listener)` and `run_until(shutdown)`; [`run`] is all a
//!   `main` needs (bind from the settings, build, run until SIGTERM/Ctrl-C).
//! * [`service_router`]: health, readiness, metrics, request id, trace context, body limit and
//!   problem+json fallbacks around a service's own routes.
//! * [`Shutdown`]: the one stop signal the server and the background tasks share.
//! * Logging, OTLP trace export and Prometheus set-up ([`init_tracing`], [`traces`],
//!   [`flush_traces`], [`prometheus`]) and RFC 9457 problem
//!   responses ([`Problem`]).
//!
//! A new service copies one of the four: a `settings.rs` flattening [`CommonSettings`], a
//! `startup.rs` implementing [`Service`], a `main.rs` calling [`run`], and its own handlers.

pub mod common_settings;
pub mod health;
pub mod problem;
pub mod router;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;
pub mod traces;

pub use common_settings::{CommonSettings, CommonSettingsError, DEFAULT_APP_HOST};
pub use health::health_routes;
pub use problem::{FieldError, PROBLEM_JSON, Problem};
pub use router::service_router;
pub use service::{RunError, Service, ServiceSettings, run, serve};
pub use settings::{
    CONFIG_FILE_VAR, LayeredSettings, SettingsError, load_settings, load_settings_from,
};
pub use shutdown::Shutdown;
pub use telemetry::{TelemetryError, flush_traces, init_tracing, metrics_routes, prometheus};
pub use trace_context::{REQUEST_ID, TRACEPARENT, traceparent};
pub use traces::{TraceExport, TraceExportError};
