//! The settings every service shares, under one name each: where it listens (`APP_HOST`,
//! `APP_PORT`), who it is (`APP_ID`), which Dapr components it uses (`PUBSUB_NAME`,
//! `STATE_STORE_NAME`), the token its sidecar must present (`APP_API_TOKEN`), how large a request
//! body may be (`MAX_BODY_SIZE`), and how to reach the sidecar (`DAPR_HTTP_ENDPOINT`, or
//! `DAPR_HOST` + `DAPR_HTTP_PORT`, and `DAPR_API_TOKEN`).
//!
//! A service flattens [`CommonSettings`] into its own settings struct, so all of them come from
//! the one layered load (defaults < `CONFIG_FILE` < environment). `APP_PORT`, `APP_ID` and
//! `MAX_BODY_SIZE` have no default here: each service names its own in its defaults.
//!
//! Every field is read as text and parsed here rather than by serde: through `#[serde(flatten)]`
//! the values lose the loader's coercions and the key in errors, and a settings file may write
//! `app_api_token = 12345` as a number. Parsing the text keeps numeric tokens intact and lets
//! every error name its variable.

use std::fmt;

use dapr_http::{DaprSettings, SecretString};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The host a service binds when `APP_HOST` is unset: every interface, as a pod needs.
pub const DEFAULT_APP_HOST: &str = "0.0.0.0";

/// What every service reads the same way.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawCommonSettings")]
pub struct CommonSettings {
    /// `APP_HOST`: the address to listen on (`0.0.0.0` in a pod; tests use `127.0.0.1`).
    pub app_host: String,
    /// `APP_PORT` (Dapr's name): the port to listen on; 0 picks a free one.
    pub app_port: u16,
    /// `APP_ID`: consumer group, dead-letter topic, `source` of what the service publishes.
    /// Kubernetes does not set it, so each service's defaults carry its name.
    pub app_id: String,
    /// `PUBSUB_NAME`: the pub/sub component.
    pub pubsub_name: String,
    /// `STATE_STORE_NAME`: the state store component.
    pub state_store_name: String,
    /// `APP_API_TOKEN`: the token the sidecar must send on deliveries (`dapr-api-token`).
    pub app_api_token: Option<SecretString>,
    /// `MAX_BODY_SIZE`: request bodies larger than this many bytes are answered 413.
    pub max_body_size: usize,
    /// The sidecar: `DAPR_HTTP_ENDPOINT` or `DAPR_HOST` + `DAPR_HTTP_PORT`, and `DAPR_API_TOKEN`.
    pub dapr: DaprSettings,
}

/// A shared setting is missing or has a value no service can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommonSettingsError {
    #[error("{0} must be set")]
    Missing(&'static str),
    #[error("{variable} must be {expected}, got `{value}`")]
    Invalid {
        variable: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error(transparent)]
    Dapr(#[from] dapr_http::SettingsError),
}

impl CommonSettings {
    /// `APP_HOST:APP_PORT`, for messages (IPv6 hosts in brackets).
    pub fn address(&self) -> String {
        if self.app_host.contains(':') && !self.app_host.starts_with('[') {
            format!("[{}]:{}", self.app_host, self.app_port)
        } else {
            format!("{}:{}", self.app_host, self.app_port)
        }
    }
}

/// The shared keys as the loader found them, each as text (see the module docs for why). No
/// `Debug`: the tokens are plain text here.
#[derive(Default, Deserialize)]
struct RawCommonSettings {
    #[serde(default)]
    app_host: Option<Text>,
    #[serde(default)]
    app_port: Option<Text>,
    #[serde(default)]
    app_id: Option<Text>,
    #[serde(default)]
    pubsub_name: Option<Text>,
    #[serde(default)]
    state_store_name: Option<Text>,
    #[serde(default)]
    app_api_token: Option<Text>,
    #[serde(default)]
    max_body_size: Option<Text>,
    #[serde(default)]
    dapr_http_endpoint: Option<Text>,
    #[serde(default)]
    dapr_host: Option<Text>,
    #[serde(default)]
    dapr_http_port: Option<Text>,
    #[serde(default)]
    dapr_api_token: Option<Text>,
}

impl TryFrom<RawCommonSettings> for CommonSettings {
    type Error = CommonSettingsError;

    fn try_from(raw: RawCommonSettings) -> Result<Self, Self::Error> {
        let dapr_vars = [
            ("DAPR_HTTP_ENDPOINT", set(raw.dapr_http_endpoint)),
            ("DAPR_HOST", set(raw.dapr_host)),
            ("DAPR_HTTP_PORT", set(raw.dapr_http_port)),
            ("DAPR_API_TOKEN", set(raw.dapr_api_token)),
        ];
        let dapr = DaprSettings::from_lookup(|name| {
            dapr_vars
                .iter()
                .find(|(var, _)| *var == name)
                .and_then(|(_, value)| value.clone())
        })?;
        Ok(Self {
            app_host: set(raw.app_host).unwrap_or_else(|| DEFAULT_APP_HOST.to_owned()),
            app_port: number("APP_PORT", "a port number (0-65535)", raw.app_port)?,
            app_id: set(raw.app_id).ok_or(CommonSettingsError::Missing("APP_ID"))?,
            pubsub_name: set(raw.pubsub_name).unwrap_or_else(|| events::PUBSUB_NAME.to_owned()),
            state_store_name: set(raw.state_store_name)
                .unwrap_or_else(|| events::STATE_STORE_NAME.to_owned()),
            app_api_token: set(raw.app_api_token).map(SecretString::from),
            max_body_size: match number(
                "MAX_BODY_SIZE",
                "a number of bytes above 0",
                raw.max_body_size,
            )? {
                0 => {
                    return Err(CommonSettingsError::Invalid {
                        variable: "MAX_BODY_SIZE",
                        expected: "a number of bytes above 0",
                        value: "0".to_owned(),
                    });
                }
                bytes => bytes,
            },
            dapr,
        })
    }
}

/// The trimmed text of a setting; empty counts as unset, as orchestrators often render absent
/// values as empty strings.
fn set(value: Option<Text>) -> Option<String> {
    value
        .map(|Text(text)| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

fn number<N: std::str::FromStr>(
    variable: &'static str,
    expected: &'static str,
    value: Option<Text>,
) -> Result<N, CommonSettingsError> {
    let text = set(value).ok_or(CommonSettingsError::Missing(variable))?;
    text.parse().map_err(|_| CommonSettingsError::Invalid {
        variable,
        expected,
        value: text,
    })
}

/// A scalar setting as text, whatever type a source gave it (TOML numbers, YAML booleans).
#[derive(Default)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a number or a boolean")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
        Ok(Text(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text::default())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::LayeredSettings;
    use secrecy::ExposeSecret as _;

    #[derive(Debug, Deserialize)]
    struct Example {
        #[serde(flatten)]
        common: CommonSettings,
        mail_from: String,
    }

    impl LayeredSettings for Example {
        const DEFAULTS_TOML: &'static str =
            "app_port = 8081\napp_id = \"example\"\nmax_body_size = 1024\nmail_from = \"a@b.c\"\n";
        type Error = crate::SettingsError;

        fn validate(&self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Example, crate::SettingsError> {
        Example::load_from(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_fill_what_the_service_does_not_name() {
        let s = load(&[]).unwrap();
        assert_eq!(s.common.app_host, "0.0.0.0");
        assert_eq!(s.common.app_port, 8081);
        assert_eq!(s.common.app_id, "example");
        assert_eq!(s.common.pubsub_name, "todo-pubsub");
        assert_eq!(s.common.state_store_name, "todo-state");
        assert_eq!(s.common.max_body_size, 1024);
        assert!(s.common.app_api_token.is_none());
        assert_eq!(s.common.dapr.http_endpoint, "http://127.0.0.1:3500");
        assert_eq!(s.mail_from, "a@b.c");
    }

    #[test]
    fn the_environment_overrides_every_shared_key() {
        let s = load(&[
            ("APP_HOST", "127.0.0.1"),
            ("APP_PORT", "9000"),
            ("APP_ID", "other"),
            ("PUBSUB_NAME", "bus"),
            ("STATE_STORE_NAME", "store"),
            ("APP_API_TOKEN", "12345"),
            ("MAX_BODY_SIZE", "2048"),
            ("DAPR_HTTP_PORT", "3600"),
            ("DAPR_API_TOKEN", "007"),
            ("MAIL_FROM", "x@y.z"),
        ])
        .unwrap();
        assert_eq!(s.common.address(), "127.0.0.1:9000");
        assert_eq!(s.common.app_id, "other");
        assert_eq!(
            (
                s.common.pubsub_name.as_str(),
                s.common.state_store_name.as_str()
            ),
            ("bus", "store")
        );
        assert_eq!(s.common.app_api_token.unwrap().expose_secret(), "12345");
        assert_eq!(s.common.max_body_size, 2048);
        assert_eq!(s.common.dapr.http_endpoint, "http://127.0.0.1:3600");
        assert_eq!(s.common.dapr.api_token.unwrap().expose_secret(), "007");
        assert_eq!(s.mail_from, "x@y.z");
    }

    #[test]
    fn the_endpoint_wins_over_host_and_port_and_empty_counts_as_unset() {
        let s = load(&[
            ("DAPR_HTTP_ENDPOINT", "http://sidecar:3500/"),
            ("DAPR_HTTP_PORT", "1"),
            ("APP_API_TOKEN", ""),
        ])
        .unwrap();
        assert_eq!(s.common.dapr.http_endpoint, "http://sidecar:3500");
        assert!(s.common.app_api_token.is_none());
    }

    #[test]
    fn errors_name_the_variable() {
        for (env, variable) in [
            (("APP_PORT", "eighty"), "APP_PORT"),
            (("APP_PORT", "70000"), "APP_PORT"),
            (("MAX_BODY_SIZE", "0"), "MAX_BODY_SIZE"),
            (("DAPR_HTTP_PORT", "0"), "DAPR_HTTP_PORT"),
            (("DAPR_HTTP_ENDPOINT", "ftp://x"), "DAPR_HTTP_ENDPOINT"),
        ] {
            let err = load(&[env]).unwrap_err().to_string();
            assert!(err.contains(variable), "{env:?}: {err}");
        }
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_the_address() {
        let s = load(&[("APP_HOST", "::1")]).unwrap();
        assert_eq!(s.common.address(), "[::1]:8081");
    }
}
