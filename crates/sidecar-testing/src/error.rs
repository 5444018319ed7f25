//! What can go wrong in the harness.

use sidecar_core::{ResourceError, StartError};

/// Harness failures.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Resources(#[from] ResourceError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("timed out waiting for {wanted} event(s) on {topic}; got {got}")]
    Timeout {
        topic: String,
        wanted: usize,
        got: usize,
    },
    #[error(
        "sidecar of {0} did not become ready (is the app listening and answering /dapr/subscribe?)"
    )]
    NotReady(String),
    #[error("no pub/sub component is loaded")]
    NoPubSub,
    #[error("publish failed with HTTP {status}: {body}")]
    Publish { status: u16, body: String },
    #[error("HTTP error: {0}")]
    Http(#[from] reqwest::Error),
}
