//! The service's one error type, and how it maps to REST answers and delivery outcomes.

use axum::response::{IntoResponse, Response};
use dapr_http::{DaprError, Outcome};
use service_kit::Problem;

/// Anything that can fail in the audit-logger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Telemetry(#[from] service_kit::TelemetryError),
    #[error(transparent)]
    Dapr(#[from] DaprError),
    /// Every attempt of an append lost an etag race (or a chunk kept failing to be created).
    #[error("gave up appending to {trail} after {attempts} conflicting attempts")]
    Contended { trail: String, attempts: u32 },
    /// A stored value does not have the shape this service writes.
    #[error("stored value `{key}` is malformed: {reason}")]
    Corrupt { key: String, reason: String },
    /// A batch append failed; every entry of the batch shares its error.
    #[error("{0}")]
    Batch(std::sync::Arc<Error>),
    #[error("{0}")]
    NotFound(String),
    #[error("invalid `{field}`: {message}")]
    BadRequest {
        field: &'static str,
        message: String,
    },
}

impl Error {
    /// The delivery outcome for a failure while recording an event: store trouble is transient,
    /// so the event is redelivered (or dead-lettered to our own dead-letter topic, where it is
    /// recorded again).
    pub fn outcome(&self) -> Outcome {
        Outcome::Retry(self.to_string())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Self::NotFound(detail) => Problem::not_found(detail.clone()).into_response(),
            Self::BadRequest { field, message } => {
                Problem::validation(vec![service_kit::FieldError::new(*field, message.clone())])
                    .into_response()
            }
            Self::Dapr(e) if e.is_transient() => {
                Problem::unavailable("the state store is not reachable").into_response()
            }
            Self::Contended { .. } => {
                Problem::unavailable("the trail is busy, try again").into_response()
            }
            _ => {
                tracing::error!(error = %self, "request failed");
                Problem::internal().into_response()
            }
        }
    }
}
