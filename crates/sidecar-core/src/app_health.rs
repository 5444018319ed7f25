//! App health checks, as daprd runs them with `--enable-app-health-check`.
//!
//! The sidecar probes `GET <app><path>` every `interval`; a 2xx answer within `timeout` is a
//! success, anything else a failure. The app starts out unhealthy and becomes healthy at the first
//! success; it turns unhealthy again after `threshold` failures in a row. While it is unhealthy
//! the sidecar takes no new work for it: no message is delivered (they wait in the broker, as
//! they do when daprd unsubscribes) and service invocation of it fails with `ERR_DIRECT_INVOKE`
//! ("app is not in a healthy state") without reaching it.

use std::sync::Arc;
use std::time::Duration;

use crate::sidecar::SidecarState;

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
            "healthProbeInterval": go_duration(self.interval),
            "healthProbeTimeout": go_duration(self.timeout),
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

/// A duration as Go's `time.Duration.String` writes it, to millisecond precision: `0s`, `500ms`,
/// `5s`, `1.5s`, `1m30s`, `2h0m0s`.
fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let total = d.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    let millis = d.subsec_millis();
    let seconds = if millis == 0 {
        seconds.to_string()
    } else {
        format!("{seconds}.{millis:03}")
            .trim_end_matches('0')
            .to_owned()
    };
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// Probes the app until the sidecar shuts down, publishing each change of health on
/// `state.app_healthy`.
pub(crate) async fn run_probes(state: Arc<SidecarState>, options: AppHealthOptions, base: String) {
    let url = format!("{base}{}", options.path);
    let mut ticker = tokio::time::interval(options.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Unhealthy until proven otherwise: the count starts at the threshold.
    let mut failures = options.threshold;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = state.shutdown.cancelled() => return,
        }
        let mut probe = state.client.get(&url).timeout(options.timeout);
        if let Some(token) = &state.opts.app_api_token {
            probe = probe.header(crate::tokens::TOKEN_HEADER, token);
        }
        let outcome = match probe.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("answered {}", response.status())),
            Err(e) if e.is_timeout() => Err(format!("no answer within {:?}", options.timeout)),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                if failures >= options.threshold {
                    tracing::info!(app_id = %state.app_id(), "app entered healthy status");
                    state.app_healthy.send_replace(true);
                }
                failures = 0;
            }
            Err(reason) => {
                failures = failures.saturating_add(1);
                if failures == options.threshold {
                    tracing::warn!(app_id = %state.app_id(), %url, %reason,
                        "app entered unhealthy status after {failures} failed health probes");
                    state.app_healthy.send_replace(false);
                } else {
                    tracing::debug!(app_id = %state.app_id(), %url, %reason, "app health probe failed");
                }
            }
        }
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
            assert_eq!(go_duration(d), text);
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
