//! The service's one error type. Start-up errors stop the process with a message that names the
//! setting; per-event errors are mapped to a delivery outcome in `worker.rs`, explicitly, one
//! variant at a time.

use crate::compose::ComposeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing, malformed or contradicts another one.
    #[error("invalid setting {name}: {reason}")]
    Settings { name: &'static str, reason: String },
    #[error(transparent)]
    Config(#[from] service_kit::SettingsError),
    #[error(transparent)]
    Telemetry(#[from] service_kit::TelemetryError),
    #[error("Dapr: {0}")]
    Dapr(#[from] dapr_http::DaprError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error("sending failed: {0}")]
    Send(#[from] SendError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// How one send failed: the transports (the SMTP pool, lettre's transports, the file transport)
/// all report in these two kinds, and the worker maps each to RETRY or DROP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("temporary failure: {0}")]
    Transient(String),
    #[error("permanent failure: {0}")]
    Permanent(String),
}
