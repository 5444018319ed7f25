//! Settings: built-in defaults < optional `CONFIG_FILE` < environment (see the crate README for
//! the table). The keys every service shares (listen address, app id, components, tokens, body
//! limit, the sidecar's address) are `service_kit::CommonSettings`, flattened in.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use service_kit::{CommonSettings, LayeredSettings, ServiceSettings};

/// Built-in defaults. There is deliberately no JWT secret here: a service that silently accepted
/// tokens signed with a well-known key would be open to anyone, so the local run config must set
/// `JWT_SECRET` explicitly.
pub const DEFAULTS_TOML: &str = r#"
app_port = 8080
app_id = "task-api"
max_body_size = 65536
jwt_algorithm = "HS256"
jwt_leeway = "30s"
jwt_max_lifetime = "24h"
outbox_shards = 16
outbox_relay_interval = "5s"
outbox_grace_period = "15s"
outbox_lease_ttl = "15s"
conflict_retries = 25
tombstone_ttl = "7days"
max_open_tasks_per_user = 10000
index_head_size = 64
index_segment_size = 48
index_projection_interval = "250ms"
"#;

/// The most clock skew `JWT_LEEWAY` may tolerate: beyond a few minutes, an expired token stays
/// usable long enough to matter.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Minimum HS256 secret length: shorter secrets can be brute-forced offline from one token.
pub const MIN_SECRET_BYTES: usize = 32;

/// Everything the service reads from its configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Listen address, app id (the `source` of published events), components, tokens, body
    /// limit (`MAX_BODY_SIZE`: larger request bodies get 413) and the sidecar's address.
    #[serde(flatten)]
    pub common: CommonSettings,
    /// HS256 shared secret. Either this or `jwt_public_key_file` must be set.
    #[serde(default)]
    pub jwt_secret: Option<SecretString>,
    /// PEM public key for RS256/ES256 tokens.
    #[serde(default)]
    pub jwt_public_key_file: Option<PathBuf>,
    /// `HS256`, `RS256` or `ES256`.
    pub jwt_algorithm: String,
    /// Required `iss`, when set.
    #[serde(default)]
    pub jwt_issuer: Option<String>,
    /// Required `aud`, when set.
    #[serde(default)]
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf` (at most [`MAX_LEEWAY`]).
    #[serde(with = "humantime_serde")]
    pub jwt_leeway: Duration,
    /// `JWT_MAX_LIFETIME`: tokens valid for longer (`exp - iat`, or `exp - now` without `iat`)
    /// are refused, so a leaked long-lived token cannot be used for months.
    #[serde(with = "humantime_serde")]
    pub jwt_max_lifetime: Duration,
    /// How many shards of the earliest outbox layout (`outbox:{n}`) the relay drains; entries
    /// are now written under per-event keys.
    pub outbox_shards: u32,
    /// How often the relay looks for unpublished outbox entries.
    #[serde(with = "humantime_serde")]
    pub outbox_relay_interval: Duration,
    /// An outbox entry younger than this belongs to a request still in flight; the relay leaves it.
    #[serde(with = "humantime_serde")]
    pub outbox_grace_period: Duration,
    /// TTL of this process's outbox writer lease: how long after the process dies other
    /// replicas take over its outbox entries. At least one second (the store's TTL unit).
    #[serde(with = "humantime_serde")]
    pub outbox_lease_ttl: Duration,
    /// Attempts of a read-modify-write before answering 503 under contention.
    pub conflict_retries: u32,
    /// How long a deleted task's tombstone stays (it proves a delete event committed).
    #[serde(with = "humantime_serde")]
    pub tombstone_ttl: Duration,
    /// `MAX_OPEN_TASKS_PER_USER`: open (not completed, not deleted) tasks one user may have; a
    /// create beyond it is answered 409 `open-task-limit` (see `crate::repository::limit`).
    pub max_open_tasks_per_user: u32,
    /// `INDEX_HEAD_SIZE`: summaries an index bucket's head holds before its oldest are sealed
    /// into a segment; a list reads every head, so this bounds a page's base cost.
    pub index_head_size: usize,
    /// `INDEX_SEGMENT_SIZE`: summaries per sealed segment (less than `INDEX_HEAD_SIZE`).
    pub index_segment_size: usize,
    /// `INDEX_PROJECTION_INTERVAL`: how often the cleaner projects committed changes into the
    /// index (and releases slots, and deletes settled outbox keys): how long another replica's
    /// list may lag behind a change (`crate::listing`).
    #[serde(with = "humantime_serde")]
    pub index_projection_interval: Duration,
}

/// A setting is missing or inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Load(#[from] service_kit::SettingsError),
    #[error("JWT_ALGORITHM must be HS256, RS256 or ES256, not `{0}`")]
    Algorithm(String),
    #[error("JWT_ALGORITHM=HS256 needs JWT_SECRET (at least {MIN_SECRET_BYTES} bytes)")]
    MissingSecret,
    #[error("JWT_SECRET is {0} bytes; HS256 needs at least {MIN_SECRET_BYTES}")]
    ShortSecret(usize),
    #[error("JWT_ALGORITHM={0} needs JWT_PUBLIC_KEY_FILE (a PEM public key)")]
    MissingPublicKey(String),
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("JWT_LEEWAY must be at most {}s, got {}s", MAX_LEEWAY.as_secs(), .0.as_secs())]
    Leeway(Duration),
    #[error("OUTBOX_LEASE_TTL is {0:?}; it must be at least 1s (the state store's TTL unit)")]
    ShortLease(Duration),
    #[error("INDEX_SEGMENT_SIZE ({segment}) must be less than INDEX_HEAD_SIZE ({head})")]
    IndexSizes { head: usize, segment: usize },
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

    /// Checks the combinations the type system cannot.
    fn validate(&self) -> Result<(), SettingsError> {
        match self.jwt_algorithm.as_str() {
            "HS256" => match &self.jwt_secret {
                None => return Err(SettingsError::MissingSecret),
                Some(secret) if secret.expose_secret().len() < MIN_SECRET_BYTES => {
                    return Err(SettingsError::ShortSecret(secret.expose_secret().len()));
                }
                Some(_) => {}
            },
            "RS256" | "ES256" => {
                if self.jwt_public_key_file.is_none() {
                    return Err(SettingsError::MissingPublicKey(self.jwt_algorithm.clone()));
                }
            }
            other => return Err(SettingsError::Algorithm(other.to_owned())),
        }
        if self.jwt_leeway > MAX_LEEWAY {
            return Err(SettingsError::Leeway(self.jwt_leeway));
        }
        if self.jwt_max_lifetime.as_secs() == 0 {
            return Err(SettingsError::Zero("JWT_MAX_LIFETIME"));
        }
        if self.outbox_shards == 0 {
            return Err(SettingsError::Zero("OUTBOX_SHARDS"));
        }
        if self.conflict_retries == 0 {
            return Err(SettingsError::Zero("CONFLICT_RETRIES"));
        }
        if self.max_open_tasks_per_user == 0 {
            return Err(SettingsError::Zero("MAX_OPEN_TASKS_PER_USER"));
        }
        if self.index_segment_size == 0 {
            return Err(SettingsError::Zero("INDEX_SEGMENT_SIZE"));
        }
        if self.index_segment_size >= self.index_head_size {
            return Err(SettingsError::IndexSizes {
                head: self.index_head_size,
                segment: self.index_segment_size,
            });
        }
        if self.outbox_lease_ttl < Duration::from_secs(1) {
            return Err(SettingsError::ShortLease(self.outbox_lease_ttl));
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

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_with_a_secret() {
        let s = Settings::load_from(env(&[("JWT_SECRET", SECRET)])).unwrap();
        assert_eq!(s.common.app_port, 8080);
        assert_eq!(s.common.state_store_name, "todo-state");
        assert_eq!(s.common.pubsub_name, "todo-pubsub");
        assert_eq!(s.common.max_body_size, 65536);
        assert_eq!(s.outbox_shards, 16);
        assert_eq!(s.outbox_relay_interval, Duration::from_secs(5));
        assert_eq!(s.max_open_tasks_per_user, 10_000);
        assert_eq!((s.index_head_size, s.index_segment_size), (64, 48));
    }

    #[test]
    fn the_open_task_limit_and_the_index_sizes_are_checked() {
        let s = Settings::load_from(env(&[
            ("JWT_SECRET", SECRET),
            ("MAX_OPEN_TASKS_PER_USER", "3"),
        ]))
        .unwrap();
        assert_eq!(s.max_open_tasks_per_user, 3);
        let err = Settings::load_from(env(&[
            ("JWT_SECRET", SECRET),
            ("MAX_OPEN_TASKS_PER_USER", "0"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("MAX_OPEN_TASKS_PER_USER"), "{err}");
        let err = Settings::load_from(env(&[
            ("JWT_SECRET", SECRET),
            ("INDEX_HEAD_SIZE", "8"),
            ("INDEX_SEGMENT_SIZE", "8"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("INDEX_SEGMENT_SIZE (8) must be less than INDEX_HEAD_SIZE (8)"),
            "{err}"
        );
    }

    #[test]
    fn no_secret_is_refused() {
        let err = Settings::load_from(env(&[])).unwrap_err();
        assert!(matches!(err, SettingsError::MissingSecret), "{err}");
        let err = Settings::load_from(env(&[("JWT_SECRET", "short")])).unwrap_err();
        assert!(matches!(err, SettingsError::ShortSecret(5)), "{err}");
    }

    #[test]
    fn environment_overrides() {
        let s = Settings::load_from(env(&[
            ("JWT_SECRET", SECRET),
            ("APP_PORT", "9000"),
            ("STATE_STORE_NAME", "other"),
            ("OUTBOX_GRACE_PERIOD", "250ms"),
        ]))
        .unwrap();
        assert_eq!(s.common.app_port, 9000);
        assert_eq!(s.common.state_store_name, "other");
        assert_eq!(s.outbox_grace_period, Duration::from_millis(250));
    }

    #[test]
    fn asymmetric_algorithms_need_a_key_file() {
        let err = Settings::load_from(env(&[("JWT_ALGORITHM", "RS256")])).unwrap_err();
        assert!(matches!(err, SettingsError::MissingPublicKey(_)), "{err}");
        let err = Settings::load_from(env(&[("JWT_ALGORITHM", "none")])).unwrap_err();
        assert!(matches!(err, SettingsError::Algorithm(_)), "{err}");
    }

    #[test]
    fn the_leeway_is_bounded_and_the_lifetime_positive() {
        let err = Settings::load_from(env(&[("JWT_SECRET", SECRET), ("JWT_LEEWAY", "301s")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("JWT_LEEWAY must be at most 300s, got 301s"),
            "{err}"
        );
        assert!(Settings::load_from(env(&[("JWT_SECRET", SECRET), ("JWT_LEEWAY", "5m")])).is_ok());
        let err = Settings::load_from(env(&[("JWT_SECRET", SECRET), ("JWT_MAX_LIFETIME", "0s")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("JWT_MAX_LIFETIME"), "{err}");
        let s = Settings::load_from(env(&[("JWT_SECRET", SECRET)])).unwrap();
        assert_eq!(s.jwt_max_lifetime, Duration::from_secs(86_400));
    }
}
