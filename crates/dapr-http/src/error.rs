//! Typed errors of the sidecar's HTTP API.
//!
//! daprd reports failures as an HTTP status plus a JSON body `{"errorCode","message"}` (sometimes
//! with `details`). Clients must key on status + `errorCode` only, never on the message text, so
//! that is all the mapping below looks at. Bodies that are not JSON (the 401 of the API-token
//! check is plain text) are kept as the message.

use reqwest::StatusCode;
use serde::Deserialize;

use crate::SettingsError;

/// Anything that can go wrong talking to the sidecar.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaprError {
    /// The settings are unusable (bad endpoint URL, ...).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The sidecar could not be reached: connection refused, connect or request timeout, or it
    /// never became healthy before a deadline.
    #[error("the Dapr sidecar at {endpoint} is unavailable: {reason}")]
    SidecarUnavailable {
        endpoint: String,
        reason: String,
        #[source]
        source: Option<reqwest::Error>,
    },
    /// 401: the sidecar rejected our `dapr-api-token` (missing or wrong `DAPR_API_TOKEN`).
    #[error("the Dapr sidecar rejected the API token: {message}")]
    Unauthorized { message: String },
    /// 409 on save/delete: the etag given is not the current one (or first-write lost).
    #[error("etag mismatch ({code}): {message}")]
    EtagMismatch { code: String, message: String },
    /// 400 `ERR_STATE_STORE_NOT_FOUND`: no state store with that name.
    #[error("state store `{store}` not found: {message}")]
    StoreNotFound { store: String, message: String },
    /// 404 `ERR_PUBSUB_NOT_FOUND`: no pub/sub component with that name.
    #[error("pub/sub `{pubsub}` not found: {message}")]
    PubsubNotFound { pubsub: String, message: String },
    /// 403: the topic is not allowed for this app (scopes, `allowedTopics`).
    #[error("forbidden ({code}): {message}")]
    Forbidden { code: String, message: String },
    /// 500 `ERR_STATE_TRANSACTION`: the transaction failed in the store. daprd reports etag
    /// conflicts inside a transaction this way too, so see [`DaprError::is_etag_conflict`].
    #[error("state transaction failed: {message}")]
    Transaction { message: String },
    /// 400 with any other code: the request is malformed; retrying cannot help.
    #[error("bad request ({code}): {message}")]
    BadRequest { code: String, message: String },
    /// 5xx: the sidecar or the component behind it failed; usually transient.
    #[error("Dapr server error {status} ({code}): {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    /// Any other unexpected status (e.g. a plain 404 for an unknown route).
    #[error("unexpected HTTP status {status} from Dapr ({code}): {message}")]
    Unexpected {
        status: u16,
        code: String,
        message: String,
    },
    /// A response body did not have the expected shape.
    #[error("could not decode {what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be encoded as JSON.
    #[error("could not encode {what} as JSON: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl DaprError {
    /// True when the same request may succeed later: the sidecar was unreachable or answered 5xx
    /// (other than a failed transaction, which needs fresh reads before it is retried).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::SidecarUnavailable { .. } | Self::Server { .. })
    }

    /// True for an optimistic-concurrency conflict: 409 on save/delete, or 500
    /// `ERR_STATE_TRANSACTION`, which is how daprd reports an etag conflict in a transaction (it
    /// cannot be told apart from other store failures in a transaction). Callers re-read and retry.
    pub fn is_etag_conflict(&self) -> bool {
        matches!(self, Self::EtagMismatch { .. } | Self::Transaction { .. })
    }

    /// True when a save may have lost an optimistic-concurrency race: [`Self::is_etag_conflict`],
    /// or 500 `ERR_STATE_SAVE`, which is how `state.redis` (and the local sidecar, which copies
    /// it) answers a `first-write` save without an etag on a key that already exists. A store
    /// outage gives the same 500, so callers re-read before deciding and bound their retries.
    pub fn is_write_conflict(&self) -> bool {
        self.is_etag_conflict()
            || matches!(self, Self::Server { status: 500, code, .. } if code == "ERR_STATE_SAVE")
    }

    /// The `errorCode` daprd gave, if any.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::EtagMismatch { code, .. }
            | Self::Forbidden { code, .. }
            | Self::BadRequest { code, .. }
            | Self::Server { code, .. }
            | Self::Unexpected { code, .. } => Some(code.as_str()).filter(|c| !c.is_empty()),
            Self::StoreNotFound { .. } => Some("ERR_STATE_STORE_NOT_FOUND"),
            Self::PubsubNotFound { .. } => Some("ERR_PUBSUB_NOT_FOUND"),
            Self::Transaction { .. } => Some("ERR_STATE_TRANSACTION"),
            _ => None,
        }
    }

    pub(crate) fn unavailable(endpoint: &str, source: reqwest::Error) -> Self {
        let reason = if source.is_timeout() {
            "timed out".to_owned()
        } else if source.is_connect() {
            "connection failed".to_owned()
        } else {
            "request failed".to_owned()
        };
        Self::SidecarUnavailable {
            endpoint: endpoint.to_owned(),
            reason,
            source: Some(source),
        }
    }
}

/// What the failing call addressed, so "not found" errors can name it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Store(&'a str),
    Pubsub(&'a str),
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default, rename = "errorCode")]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// Longest message kept from a non-JSON error body (e.g. an HTML page from a proxy).
const MAX_TEXT_MESSAGE: usize = 512;

/// Maps a non-success response to a typed error.
pub(crate) fn from_response(status: StatusCode, body: &[u8], target: Target<'_>) -> DaprError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => (parsed.error_code, parsed.message),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let cut = text
                .char_indices()
                .nth(MAX_TEXT_MESSAGE)
                .map_or(text.len(), |(i, _)| i);
            (String::new(), text[..cut].to_owned())
        }
    };
    match (status.as_u16(), code.as_str(), target) {
        (401, _, _) => DaprError::Unauthorized { message },
        (409, _, _) => DaprError::EtagMismatch { code, message },
        (400, "ERR_STATE_STORE_NOT_FOUND", target) => DaprError::StoreNotFound {
            store: match target {
                Target::Store(store) => store.to_owned(),
                _ => String::new(),
            },
            message,
        },
        (404, "ERR_PUBSUB_NOT_FOUND", target) => DaprError::PubsubNotFound {
            pubsub: match target {
                Target::Pubsub(pubsub) => pubsub.to_owned(),
                _ => String::new(),
            },
            message,
        },
        (403, _, _) => DaprError::Forbidden { code, message },
        (500, "ERR_STATE_TRANSACTION", _) => DaprError::Transaction { message },
        (400, _, _) => DaprError::BadRequest { code, message },
        (500..=599, _, _) => DaprError::Server {
            status: status.as_u16(),
            code,
            message,
        },
        (status, _, _) => DaprError::Unexpected {
            status,
            code,
            message,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn map(status: u16, body: &str) -> DaprError {
        from_response(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            Target::Store("s"),
        )
    }

    #[test]
    fn a_lost_first_write_counts_as_a_write_conflict_and_other_failures_do_not() {
        let json = |code: &str| format!(r#"{{"errorCode":"{code}","message":"m"}}"#);
        assert!(map(500, &json("ERR_STATE_SAVE")).is_write_conflict());
        assert!(map(409, &json("ERR_STATE_SAVE")).is_write_conflict());
        assert!(map(500, &json("ERR_STATE_TRANSACTION")).is_write_conflict());
        assert!(!map(500, &json("ERR_STATE_GET")).is_write_conflict());
        assert!(!map(400, &json("ERR_STATE_SAVE")).is_write_conflict());
        assert!(!map(503, &json("ERR_STATE_SAVE")).is_write_conflict());
    }

    #[test]
    fn status_and_code_decide_the_variant_not_the_message() {
        let json = |code: &str| format!(r#"{{"errorCode":"{code}","message":"m","details":[]}}"#);
        assert!(matches!(
            map(409, &json("ERR_STATE_SAVE")),
            DaprError::EtagMismatch { .. }
        ));
        assert!(matches!(
            map(400, &json("ERR_STATE_STORE_NOT_FOUND")),
            DaprError::StoreNotFound { store, .. } if store == "s"
        ));
        assert!(matches!(
            map(400, &json("ERR_STATE_SAVE")),
            DaprError::BadRequest { .. }
        ));
        assert!(matches!(
            map(500, &json("ERR_STATE_TRANSACTION")),
            DaprError::Transaction { .. }
        ));
        assert!(matches!(
            map(500, &json("ERR_STATE_SAVE")),
            DaprError::Server { status: 500, .. }
        ));
        assert!(matches!(
            map(403, &json("ERR_PUBSUB_FORBIDDEN")),
            DaprError::Forbidden { .. }
        ));
        assert!(matches!(
            map(401, "invalid api token"),
            DaprError::Unauthorized { .. }
        ));
        assert!(matches!(
            map(404, "404 page not found"),
            DaprError::Unexpected { status: 404, .. }
        ));
    }

    #[test]
    fn long_text_bodies_are_cut_on_a_char_boundary() {
        let body = "é".repeat(2000);
        let DaprError::Server { message, code, .. } = map(503, &body) else {
            panic!("not a server error");
        };
        assert!(code.is_empty());
        assert_eq!(message.chars().count(), MAX_TEXT_MESSAGE);
    }
}
