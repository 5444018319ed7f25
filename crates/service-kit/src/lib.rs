//! Plumbing every task service shares, so each service's code is about its own job: layered
//! settings, tracing, Prometheus metrics, health endpoints, graceful shutdown and RFC 9457
//! problem responses.

pub mod lifecycle;
pub mod problem;
pub mod settings;
pub mod telemetry;

pub use lifecycle::{health_routes, shutdown_signal};
pub use problem::{FieldError, PROBLEM_JSON, Problem};
pub use settings::{
    CONFIG_FILE_VAR, LayeredSettings, SettingsError, load_settings, load_settings_from,
};
pub use telemetry::{TelemetryError, init_tracing, metrics_routes, prometheus};
