//! The service's one error type, and how each error answers a delivery.

use dapr_http::{DaprError, Outcome};

/// Anything that can go wrong in the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dapr(#[from] DaprError),
    /// Too many concurrent writers on one key; the work is retried later.
    #[error("gave up after {attempts} conflicting writes of state key `{key}`")]
    Contended { key: String, attempts: u32 },
    /// This replica no longer holds the scanner lease; the scan stopped.
    #[error("the scanner lease was lost")]
    LeaseLost,
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error(transparent)]
    Telemetry(#[from] service_kit::TelemetryError),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

impl Error {
    /// The answer to the sidecar when handling a delivery failed. A stored value that cannot be
    /// decoded will not decode on redelivery either, so that event is dead-lettered; everything
    /// else (sidecar down, store errors, lost races, misconfiguration being fixed) is retried.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Dapr(DaprError::Decode { .. } | DaprError::Encode { .. }) => {
                Outcome::Drop(self.to_string())
            }
            _ => Outcome::Retry(self.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_retry_and_corrupt_state_drops() {
        let unavailable = Error::Dapr(DaprError::SidecarUnavailable {
            endpoint: "http://127.0.0.1:1".into(),
            reason: "connection failed".into(),
            source: None,
        });
        assert!(matches!(unavailable.outcome(), Outcome::Retry(_)));
        assert!(matches!(
            Error::Contended {
                key: "k".into(),
                attempts: 3
            }
            .outcome(),
            Outcome::Retry(_)
        ));
        let corrupt = Error::Dapr(DaprError::Decode {
            what: "state key `task:1`".into(),
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        });
        assert!(matches!(corrupt.outcome(), Outcome::Drop(_)));
    }
}
