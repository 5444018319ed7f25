//! Settings: built-in defaults, then the optional `CONFIG_FILE`, then environment variables.
//!
//! Durations are humantime strings (`90s`, `1h 30m`). Every variable is documented in the crate
//! README; validation rejects combinations that would make the lease or the scan unsafe. The keys
//! every service shares are `service_kit::CommonSettings`, flattened in.

use std::time::Duration;

use serde::Deserialize;
use service_kit::{CommonSettings, LayeredSettings, ServiceSettings};

/// Defaults, in TOML. Environment variables use the upper-cased key (`REMINDER_LEAD_TIME`).
pub const DEFAULTS_TOML: &str = r#"
app_port = 8082
app_id = "reminder-scheduler"
max_body_size = 1048576
reminder_lead_time = "1h"
remind_overdue = false
scan_interval = "5s"
bucket_width = "1m"
scan_lookback = "2m"
lease_ttl = "15s"
lease_renew_interval = "5s"
tombstone_ttl = "7d"
"#;

/// The service's settings.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Listen address, app id (dead-letter topic, event `source`, lease holder prefix),
    /// components, tokens, body limit and the sidecar's address.
    #[serde(flatten)]
    pub common: CommonSettings,
    /// `REMINDER_LEAD_TIME`: how long before the due date the reminder goes out.
    #[serde(with = "humantime_serde")]
    pub reminder_lead_time: Duration,
    /// `REMIND_OVERDUE`: also remind tasks whose due date has already passed.
    pub remind_overdue: bool,
    /// `SCAN_INTERVAL`: how often the lease holder scans for due reminders.
    #[serde(with = "humantime_serde")]
    pub scan_interval: Duration,
    /// `BUCKET_WIDTH`: width of one due-date bucket (whole seconds).
    #[serde(with = "humantime_serde")]
    pub bucket_width: Duration,
    /// `SCAN_LOOKBACK`: an extra margin each scan re-reads behind its watermark; correctness does
    /// not rest on it (see `watermark`).
    #[serde(with = "humantime_serde")]
    pub scan_lookback: Duration,
    /// `LEASE_TTL`: lifetime of the scanner lease in the store (whole seconds).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// `LEASE_RENEW_INTERVAL`: how often the holder renews and the others try to acquire.
    #[serde(with = "humantime_serde")]
    pub lease_renew_interval: Duration,
    /// `TOMBSTONE_TTL`: how long a completed/deleted task's version is kept to reject late events.
    #[serde(with = "humantime_serde")]
    pub tombstone_ttl: Duration,
    /// `REPLICA_ID`: this replica's lease holder id; a random one when unset.
    #[serde(default)]
    pub replica_id: Option<String>,
}

/// A setting has a value the scheduler cannot work with.
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

    /// Checks the combinations that matter for correctness.
    fn validate(&self) -> Result<(), SettingsError> {
        let whole_secs = |name: &str, d: Duration| {
            if d.subsec_nanos() != 0 || d.is_zero() {
                Err(SettingsError::Invalid(format!(
                    "{name} must be a whole, non-zero number of seconds, got {}",
                    humantime::format_duration(d)
                )))
            } else {
                Ok(())
            }
        };
        whole_secs("BUCKET_WIDTH", self.bucket_width)?;
        // The store's TTL has one-second resolution.
        whole_secs("LEASE_TTL", self.lease_ttl)?;
        whole_secs("TOMBSTONE_TTL", self.tombstone_ttl)?;
        if self.scan_interval.is_zero() {
            return Err(SettingsError::Invalid("SCAN_INTERVAL must be > 0".into()));
        }
        // At least two renewal attempts must fit in one lease lifetime, or one slow call
        // would lose the lease.
        if self.lease_renew_interval.is_zero() || self.lease_renew_interval * 2 >= self.lease_ttl {
            return Err(SettingsError::Invalid(format!(
                "LEASE_RENEW_INTERVAL ({}) must be > 0 and less than half of LEASE_TTL ({})",
                humantime::format_duration(self.lease_renew_interval),
                humantime::format_duration(self.lease_ttl)
            )));
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
    fn defaults_match_the_documented_values() {
        let s = Settings::load_from(env(&[])).unwrap();
        assert_eq!(s.common.app_port, 8082);
        assert_eq!(s.common.max_body_size, 1024 * 1024);
        assert_eq!(s.reminder_lead_time, Duration::from_secs(3600));
        assert_eq!(s.scan_interval, Duration::from_secs(5));
        assert_eq!(s.bucket_width, Duration::from_secs(60));
        assert!(!s.remind_overdue);
        assert_eq!(s.common.app_id, "reminder-scheduler");
    }

    #[test]
    fn environment_overrides() {
        let s = Settings::load_from(env(&[
            ("REMINDER_LEAD_TIME", "90m"),
            ("REMIND_OVERDUE", "true"),
            ("SCAN_INTERVAL", "250ms"),
            ("APP_PORT", "9999"),
        ]))
        .unwrap();
        assert_eq!(s.reminder_lead_time, Duration::from_secs(5400));
        assert!(s.remind_overdue);
        assert_eq!(s.scan_interval, Duration::from_millis(250));
        assert_eq!(s.common.app_port, 9999);
    }

    #[test]
    fn unsafe_lease_timing_is_rejected() {
        let err = Settings::load_from(env(&[("LEASE_TTL", "10s"), ("LEASE_RENEW_INTERVAL", "6s")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("LEASE_RENEW_INTERVAL"), "{err}");
        let err = Settings::load_from(env(&[("BUCKET_WIDTH", "1500ms")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BUCKET_WIDTH"), "{err}");
    }

    #[test]
    fn a_numeric_app_api_token_is_read_as_a_string() {
        use secrecy::ExposeSecret as _;
        let s = Settings::load_from(env(&[("APP_API_TOKEN", "12345")])).unwrap();
        assert_eq!(s.common.app_api_token.unwrap().expose_secret(), "12345");
    }

    #[test]
    fn a_bad_duration_names_the_key() {
        let err = Settings::load_from(env(&[("REMINDER_LEAD_TIME", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("reminder_lead_time"), "{err}");
    }
}
