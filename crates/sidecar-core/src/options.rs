//! How one sidecar runs: [`SidecarOptions`], and the app health check settings of daprd's
//! `--enable-app-health-check` ([`AppHealthOptions`]), with their defaults and validation.

use crate::acl::AccessControl;
use crate::go;
use crate::otel::TracingOptions;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// daprd's default `--max-body-size` (4 MiB).
pub const DEFAULT_MAX_BODY_SIZE: usize = 4 * 1024 * 1024;

/// How one sidecar runs.
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    pub app_id: String,
    /// App port; `None` = no app channel (no subscriptions, no invocation of this app).
    pub app_port: Option<u16>,
    /// Host the app listens on (`127.0.0.1` by default).
    pub app_channel_address: String,
    /// Dapr HTTP API port; 0 = random.
    pub dapr_http_port: u16,
    /// Addresses the API listens on; empty = all interfaces.
    pub listen_addresses: Vec<IpAddr>,
    /// `DAPR_API_TOKEN`: required on every API call except the healthz endpoints.
    pub api_token: Option<String>,
    /// `APP_API_TOKEN`: sent to the app as `dapr-api-token`.
    pub app_api_token: Option<String>,
    /// Largest request body accepted (413 beyond).
    pub max_body_size: usize,
    /// App health checks (`--enable-app-health-check`); `None` = off, the app counts as healthy.
    pub app_health: Option<AppHealthOptions>,
    /// `spec.accessControl` of the sidecar's Configuration (`--config`): who may invoke this
    /// app. `None` = every app may.
    pub access_control: Option<AccessControl>,
    /// `spec.tracing` of the Configuration, when it exports spans; `None` = no tracing.
    pub tracing: Option<TracingOptions>,
}

impl SidecarOptions {
    /// Defaults for `app_id`: no app port, random API port on 127.0.0.1, no tokens, 4 MiB bodies.
    pub fn new(app_id: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            app_port: None,
            app_channel_address: "127.0.0.1".into(),
            dapr_http_port: 0,
            listen_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            api_token: None,
            app_api_token: None,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            app_health: None,
            access_control: None,
            tracing: None,
        }
    }
}

/// daprd's defaults: `/healthz`, every 5 s, 500 ms timeout, 3 failures.
pub const DEFAULT_PATH: &str = "/healthz";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
pub const DEFAULT_THRESHOLD: u32 = 3;

/// The probe settings (`--app-health-*` flags, `appHealth*` run-file keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHealthOptions {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub threshold: u32,
}

impl Default for AppHealthOptions {
    fn default() -> Self {
        Self {
            path: DEFAULT_PATH.to_owned(),
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

/// One of the probe settings, by the names daprd's flag and the run file give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppHealthSetting {
    Path,
    Interval,
    Timeout,
    Threshold,
}

impl AppHealthSetting {
    /// The daprd flag, without the leading dashes.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Path => "app-health-check-path",
            Self::Interval => "app-health-probe-interval",
            Self::Timeout => "app-health-probe-timeout",
            Self::Threshold => "app-health-threshold",
        }
    }

    /// The run-file key.
    pub fn run_file_key(self) -> &'static str {
        match self {
            Self::Path => "appHealthCheckPath",
            Self::Interval => "appHealthProbeInterval",
            Self::Timeout => "appHealthProbeTimeout",
            Self::Threshold => "appHealthThreshold",
        }
    }
}

/// Which setting is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{}: {why}", setting.flag())]
pub struct AppHealthError {
    pub setting: AppHealthSetting,
    pub why: String,
}

impl AppHealthOptions {
    /// Builds the options from the textual values daprd accepts: the path, the interval in whole
    /// seconds, the timeout in milliseconds and the threshold; `None` keeps daprd's default.
    pub fn from_values(
        path: Option<&str>,
        interval_seconds: Option<&str>,
        timeout_millis: Option<&str>,
        threshold: Option<&str>,
    ) -> Result<Self, AppHealthError> {
        let mut options = Self::default();
        if let Some(path) = path.map(str::trim).filter(|p| !p.is_empty()) {
            options.path = if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            };
        }
        let number = |setting: AppHealthSetting, text: &str| {
            text.trim().parse::<u64>().map_err(|_| AppHealthError {
                setting,
                why: format!("{text:?} is not a whole number"),
            })
        };
        if let Some(text) = interval_seconds {
            options.interval = Duration::from_secs(number(AppHealthSetting::Interval, text)?);
        }
        if let Some(text) = timeout_millis {
            options.timeout = Duration::from_millis(number(AppHealthSetting::Timeout, text)?);
        }
        if let Some(text) = threshold {
            options.threshold =
                u32::try_from(number(AppHealthSetting::Threshold, text)?).map_err(|_| {
                    AppHealthError {
                        setting: AppHealthSetting::Threshold,
                        why: format!("{text:?} is too large"),
                    }
                })?;
        }
        options.validate()?;
        Ok(options)
    }

    /// The `appConnectionProperties.health` object of the metadata answer, durations written
    /// the way Go prints them (`5s`, `500ms`), as daprd does.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "healthCheckPath": self.path,
            "healthProbeInterval": go::format_duration(self.interval),
            "healthProbeTimeout": go::format_duration(self.timeout),
            "healthThreshold": self.threshold,
        })
    }

    /// The combinations daprd refuses at start-up.
    pub fn validate(&self) -> Result<(), AppHealthError> {
        let fail = |setting, why: &str| {
            Err(AppHealthError {
                setting,
                why: why.to_owned(),
            })
        };
        if self.interval.is_zero() {
            return fail(AppHealthSetting::Interval, "must be at least 1 second");
        }
        if self.timeout.is_zero() {
            return fail(AppHealthSetting::Timeout, "must be at least 1 millisecond");
        }
        if self.timeout > self.interval {
            return fail(
                AppHealthSetting::Timeout,
                "must not be longer than the probe interval",
            );
        }
        if self.threshold == 0 {
            return fail(AppHealthSetting::Threshold, "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_daprds() {
        let options = AppHealthOptions::from_values(None, None, None, None).unwrap();
        assert_eq!(options, AppHealthOptions::default());
        assert_eq!(options.path, "/healthz");
        assert_eq!(options.interval, Duration::from_secs(5));
        assert_eq!(options.timeout, Duration::from_millis(500));
        assert_eq!(options.threshold, 3);
    }

    #[test]
    fn values_are_read_in_daprds_units() {
        let options =
            AppHealthOptions::from_values(Some("ready"), Some("2"), Some("250"), Some("1"))
                .unwrap();
        assert_eq!(options.path, "/ready");
        assert_eq!(options.interval, Duration::from_secs(2));
        assert_eq!(options.timeout, Duration::from_millis(250));
        assert_eq!(options.threshold, 1);
    }

    #[test]
    fn durations_are_written_as_go_writes_them() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(7200), "2h0m0s"),
        ] {
            assert_eq!(go::format_duration(d), text);
        }
        assert_eq!(
            AppHealthOptions::default().describe(),
            serde_json::json!({
                "healthCheckPath": "/healthz",
                "healthProbeInterval": "5s",
                "healthProbeTimeout": "500ms",
                "healthThreshold": 3
            })
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = AppHealthOptions::from_values(None, Some("5s"), None, None).unwrap_err();
        assert_eq!(err.setting, AppHealthSetting::Interval);
        let err = AppHealthOptions::from_values(None, Some("1"), Some("2000"), None).unwrap_err();
        assert_eq!(err.setting, AppHealthSetting::Timeout);
        assert!(err.why.contains("interval"), "{err}");
        let err = AppHealthOptions::from_values(None, None, None, Some("0")).unwrap_err();
        assert_eq!(err.setting, AppHealthSetting::Threshold);
        let err = AppHealthOptions::from_values(None, Some("0"), None, None).unwrap_err();
        assert_eq!(err.setting, AppHealthSetting::Interval);
    }
}
