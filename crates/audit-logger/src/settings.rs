//! Settings: built-in defaults, then the optional `CONFIG_FILE`, then environment variables
//! (the upper-cased key, e.g. `TRAIL_CHUNK_SIZE`). Every key is documented in the crate README;
//! the keys every service shares are `service_kit::CommonSettings`, flattened in. Durations are
//! humantime strings (`60s`, `5m`).

use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use service_kit::{CommonSettings, LayeredSettings, ServiceSettings};

use crate::chain_key::{ChainKey, MIN_CHAIN_KEY_LEN};

/// Defaults, in TOML.
pub const DEFAULTS_TOML: &str = r#"
app_port = 8083
app_id = "audit-logger"
max_body_size = 1048576
# Each append rewrites the trail's last chunk, so a user's busy trail costs about half a chunk
# of JSON per event, read and written (see the crate README).
trail_chunk_size = 32
append_max_attempts = 64
page_limit_default = 50
page_limit_max = 500
audit_stdout = true
checkpoint_interval = "60s"
"#;

/// The shortest admin token accepted: anything shorter is guessable.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// The service's settings.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Listen address, app id (names its own dead-letter topic), components, tokens, body limit
    /// and the sidecar's address.
    #[serde(flatten)]
    pub common: CommonSettings,
    /// `AUDIT_ADMIN_TOKEN`: bearer token required on every `/audit/*` request.
    #[serde(default)]
    pub audit_admin_token: Option<SecretString>,
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
    /// `AUDIT_CHAIN_KEY`: the HMAC key of the trail's hash chain and checkpoints; kept outside
    /// the state store (a Kubernetes Secret in production).
    #[serde(default)]
    pub audit_chain_key: Option<SecretString>,
    /// `CHECKPOINT_INTERVAL`: how often signed checkpoints of the trails appended to are
    /// written to the audit log stream.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
}

impl Settings {
    /// The chain key, checked (required, at least [`MIN_CHAIN_KEY_LEN`] bytes).
    pub fn chain_key(&self) -> Result<ChainKey, SettingsError> {
        let secret = self.audit_chain_key.as_ref().ok_or_else(|| {
            SettingsError::Invalid(format!(
                "AUDIT_CHAIN_KEY must be set (at least {MIN_CHAIN_KEY_LEN} random bytes, kept \
                 outside the state store): it authenticates the audit trail"
            ))
        })?;
        ChainKey::new(secret).map_err(|e| SettingsError::Invalid(e.to_string()))
    }
}

/// A setting has a value the service cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Load(#[from] service_kit::SettingsError),
    #[error("{0}")]
    Invalid(String),
}

impl ServiceSettings for Settings {
    fn common(&self) -> &CommonSettings {
        &self.common
    }

    fn common_mut(&mut self) -> &mut CommonSettings {
        &mut self.common
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
        self.chain_key()?;
        if self.checkpoint_interval < Duration::from_millis(10) {
            return invalid(format!(
                "CHECKPOINT_INTERVAL must be at least 10ms, got {:?}",
                self.checkpoint_interval
            ));
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

    const KEY: &str = "test-chain-key-0123456789abcdef0123456789";

    #[test]
    fn defaults_and_environment() {
        let s = Settings::load_from(env(&[
            ("AUDIT_ADMIN_TOKEN", "0123456789abcdef0123"),
            ("AUDIT_CHAIN_KEY", KEY),
            ("TRAIL_CHUNK_SIZE", "10"),
        ]))
        .unwrap();
        assert_eq!(s.common.app_port, 8083);
        assert_eq!(s.common.max_body_size, 1024 * 1024);
        assert_eq!(s.trail_chunk_size, 10);
        assert!(s.audit_stdout);
        assert_eq!(s.checkpoint_interval, Duration::from_secs(60));
    }

    #[test]
    fn the_chain_key_is_required_and_long_enough() {
        let token = ("AUDIT_ADMIN_TOKEN", "0123456789abcdef0123");
        let err = Settings::load_from(env(&[token])).unwrap_err().to_string();
        assert!(err.contains("AUDIT_CHAIN_KEY must be set"), "{err}");
        let err = Settings::load_from(env(&[token, ("AUDIT_CHAIN_KEY", "too-short-key")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AUDIT_CHAIN_KEY must be at least 32 bytes, got 13"),
            "{err}"
        );
        assert!(
            !err.contains("too-short-key"),
            "the key is never printed: {err}"
        );
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
            ("AUDIT_CHAIN_KEY", KEY),
            ("TRAIL_CHUNK_SIZE", "0"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("TRAIL_CHUNK_SIZE"), "{err}");
    }
}
