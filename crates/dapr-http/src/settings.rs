//! Where the sidecar is and how to talk to it, read from the variables daprd and its tooling give
//! an app (`DAPR_HTTP_ENDPOINT`, or `DAPR_HOST` + `DAPR_HTTP_PORT`, and `DAPR_API_TOKEN`).

use std::time::Duration;

use rand::Rng as _;
use reqwest::Url;
use secrecy::SecretString;

/// The port daprd's HTTP API listens on when nothing says otherwise.
pub const DEFAULT_HTTP_PORT: u16 = 3500;
/// The host used when only `DAPR_HTTP_PORT` (or nothing) is set.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// A variable (or setting) that has a value this crate cannot use. Each variant names it so a
/// misconfigured deployment says which knob to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{variable} must be a TCP port number (1-65535), got `{value}`")]
    InvalidPort {
        variable: &'static str,
        value: String,
    },
    #[error("{variable} must be an http:// or https:// URL, got `{value}`: {reason}")]
    InvalidUrl {
        variable: &'static str,
        value: String,
        reason: String,
    },
}

/// How often a failed publish is tried again. Delays grow exponentially from `base_delay` and are
/// capped at `max_delay`; each one is drawn uniformly below that bound ("full jitter") so that many
/// replicas retrying at once do not hit a recovering broker in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first; `1` disables retries.
    pub max_attempts: u32,
    /// Upper bound of the delay before the first retry.
    pub base_delay: Duration,
    /// Upper bound of any single delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The upper bound of the delay after failed attempt number `attempt` (1-based):
    /// `min(max_delay, base_delay * 2^(attempt-1))`.
    pub fn delay_bound(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// A jittered delay in `[0, delay_bound(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let bound = self.delay_bound(attempt);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// Everything [`crate::DaprClient`] needs.
#[derive(Debug, Clone)]
pub struct DaprSettings {
    /// Base URL of the sidecar's HTTP API, e.g. `http://127.0.0.1:3500`.
    pub http_endpoint: String,
    /// Sent as `dapr-api-token` on every call when set; never logged (`Debug` redacts it).
    pub api_token: Option<SecretString>,
    /// Upper bound of one HTTP exchange with the sidecar (connect + request + response).
    pub request_timeout: Duration,
    /// Upper bound of establishing the TCP connection.
    pub connect_timeout: Duration,
    /// Retries of `publish` on connection errors and 5xx.
    pub publish_retry: RetryPolicy,
}

impl Default for DaprSettings {
    fn default() -> Self {
        Self::with_endpoint(format!("http://{DEFAULT_HOST}:{DEFAULT_HTTP_PORT}"))
    }
}

impl DaprSettings {
    /// Settings for the sidecar at `url`, no token, default timeouts and retries.
    pub fn with_endpoint(url: impl Into<String>) -> Self {
        Self {
            http_endpoint: url.into(),
            api_token: None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            publish_retry: RetryPolicy::default(),
        }
    }

    /// Reads the process environment; see [`DaprSettings::from_lookup`].
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (a variable name to its value), so callers and tests can
    /// supply variables without touching the process environment.
    ///
    /// `DAPR_HTTP_ENDPOINT` wins; otherwise `http://{DAPR_HOST}:{DAPR_HTTP_PORT}` with defaults
    /// `127.0.0.1` and `3500`. Empty values count as unset, as orchestrators often render absent
    /// values as empty strings.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let endpoint = match get("DAPR_HTTP_ENDPOINT") {
            Some(url) => {
                parse_endpoint("DAPR_HTTP_ENDPOINT", url.trim())?;
                url.trim().trim_end_matches('/').to_owned()
            }
            None => {
                let port = match get("DAPR_HTTP_PORT") {
                    Some(raw) => parse_port("DAPR_HTTP_PORT", &raw)?,
                    None => DEFAULT_HTTP_PORT,
                };
                let host = get("DAPR_HOST").unwrap_or_else(|| DEFAULT_HOST.to_owned());
                let host = host.trim();
                // A bare IPv6 address needs brackets inside a URL.
                let url = if host.contains(':') && !host.starts_with('[') {
                    format!("http://[{host}]:{port}")
                } else {
                    format!("http://{host}:{port}")
                };
                parse_endpoint("DAPR_HOST", &url)?;
                url
            }
        };
        let mut settings = Self::with_endpoint(endpoint);
        settings.api_token = get("DAPR_API_TOKEN").map(SecretString::from);
        Ok(settings)
    }

    /// Sets the API token sent to the sidecar.
    pub fn api_token(mut self, token: Option<SecretString>) -> Self {
        self.api_token = token;
        self
    }

    /// Sets the per-request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the publish retry policy.
    pub fn publish_retry(mut self, policy: RetryPolicy) -> Self {
        self.publish_retry = policy;
        self
    }
}

fn parse_port(variable: &'static str, raw: &str) -> Result<u16, SettingsError> {
    match raw.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(SettingsError::InvalidPort {
            variable,
            value: raw.to_owned(),
        }),
    }
}

/// Checks that `value` is an absolute http(s) URL with a host.
pub(crate) fn parse_endpoint(variable: &'static str, value: &str) -> Result<Url, SettingsError> {
    let invalid = |reason: String| SettingsError::InvalidUrl {
        variable,
        value: value.to_owned(),
        reason,
    };
    let url = Url::parse(value).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("unsupported scheme `{}`", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_owned()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed".to_owned()));
    }
    Ok(url)
}
