//! The service's one error type. Start-up errors stop the process with a message that names the
//! setting; per-event errors are mapped to a delivery outcome in `worker.rs`, explicitly, one
//! variant at a time.

use crate::compose::ComposeError;
use crate::mailer::SendError;

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
