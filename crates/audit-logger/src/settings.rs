//! Settings: built-in defaults, then the optional `CONFIG_FILE`, then environment variables
//! (the upper-cased key, e.g. `TRAIL_CHUNK_SIZE`). Every key is documented in the crate README.

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use service_kit::LayeredSettings;

/// Defaults, in TOML.
pub const DEFAULTS_TOML: &str = r#"
app_port = 8083
app_host = "0.0.0.0"
app_id = "audit-logger"
pubsub_name = "todo-pubsub"
state_store_name = "todo-state"
trail_chunk_size = 100
append_max_attempts = 64
page_limit_default = 50
page_limit_max = 500
audit_stdout = true
max_body_size = 1048576
"#;

/// The shortest admin token accepted: anything shorter is guessable.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// The service's settings (the sidecar connection comes from `dapr_http::DaprSettings::from_env`).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `APP_PORT`: the port deliveries, queries and probes arrive on (0 = any, for tests).
    pub app_port: u16,
    /// `APP_HOST`: the address to bind.
    pub app_host: String,
    /// `APP_ID`: this service's app id; names its own dead-letter topic.
    pub app_id: String,
    /// `PUBSUB_NAME`.
    pub pubsub_name: String,
    /// `STATE_STORE_NAME`.
    pub state_store_name: String,
    /// `AUDIT_ADMIN_TOKEN`: bearer token required on every `/audit/*` request.
    #[serde(default)]
    pub audit_admin_token: Option<SecretString>,
    /// `APP_API_TOKEN`: the token the sidecar must send on deliveries.
    #[serde(default)]
    pub app_api_token: Option<SecretString>,
    /// `TRAIL_CHUNK_SIZE`: entries per stored chunk of a trail (new chunks only).
    pub trail_chunk_size: usize,
    /// `APPEND_MAX_ATTEMPTS`: etag conflicts tolerated per append before the delivery is retried.
    pub append_max_attempts: u32,
    /// `PAGE_LIMIT_DEFAULT`: page size when a query gives no `limit`.
    pub page_limit_default: usize,
    /// `PAGE_LIMIT_MAX`: largest `limit` accepted.
    pub page_limit_max: usize,
    /// `AUDIT_STDOUT`: also write every entry as one JSON line to stdout.
    pub audit_stdout: bool,
    /// `MAX_BODY_SIZE`: largest request body accepted, in bytes.
    pub max_body_size: usize,
}

/// A setting has a value the service cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Load(#[from] service_kit::SettingsError),
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Settings for tests: port 0 on loopback, the given admin token, no stdout lines.
    pub fn for_tests(admin_token: &str) -> Self {
        Self {
            app_port: 0,
            app_host: "127.0.0.1".into(),
            app_id: events::apps::AUDIT_LOGGER.into(),
            pubsub_name: events::PUBSUB_NAME.into(),
            state_store_name: events::STATE_STORE_NAME.into(),
            audit_admin_token: Some(SecretString::from(admin_token.to_owned())),
            app_api_token: None,
            trail_chunk_size: 100,
            append_max_attempts: 64,
            page_limit_default: 50,
            page_limit_max: 500,
            audit_stdout: false,
            max_body_size: 1024 * 1024,
        }
    }
}

impl LayeredSettings for Settings {
    const DEFAULTS_TOML: &'static str = DEFAULTS_TOML;
    type Error = SettingsError;

    /// Rejects values that would make the service insecure or unable to work.
    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |m: String| Err(SettingsError::Invalid(m));
        match &self.audit_admin_token {
            None => return invalid("AUDIT_ADMIN_TOKEN must be set".into()),
            Some(t) if t.expose_secret().trim().len() < MIN_ADMIN_TOKEN_LEN => {
                return invalid(format!(
                    "AUDIT_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LEN} characters"
                ));
            }
            Some(_) => {}
        }
        if !(1..=1000).contains(&self.trail_chunk_size) {
            return invalid(format!(
                "TRAIL_CHUNK_SIZE must be between 1 and 1000, got {}",
                self.trail_chunk_size
            ));
        }
        if self.append_max_attempts == 0 {
            return invalid("APPEND_MAX_ATTEMPTS must be at least 1".into());
        }
        if self.page_limit_default == 0 || self.page_limit_default > self.page_limit_max {
            return invalid(format!(
                "PAGE_LIMIT_DEFAULT ({}) must be between 1 and PAGE_LIMIT_MAX ({})",
                self.page_limit_default, self.page_limit_max
            ));
        }
        if self.app_id.trim().is_empty() {
            return invalid("APP_ID must not be empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_environment() {
        let s = Settings::load_from(env(&[
            ("AUDIT_ADMIN_TOKEN", "0123456789abcdef0123"),
            ("TRAIL_CHUNK_SIZE", "10"),
        ]))
        .unwrap();
        assert_eq!(s.app_port, 8083);
        assert_eq!(s.trail_chunk_size, 10);
        assert!(s.audit_stdout);
    }

    #[test]
    fn the_admin_token_is_required_and_long_enough() {
        let err = Settings::load_from(env(&[])).unwrap_err().to_string();
        assert!(err.contains("AUDIT_ADMIN_TOKEN"), "{err}");
        let err = Settings::load_from(env(&[("AUDIT_ADMIN_TOKEN", "short")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least"), "{err}");
    }

    #[test]
    fn bad_chunk_size_is_named() {
        let err = Settings::load_from(env(&[
            ("AUDIT_ADMIN_TOKEN", "0123456789abcdef0123"),
            ("TRAIL_CHUNK_SIZE", "0"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("TRAIL_CHUNK_SIZE"), "{err}");
    }
}
