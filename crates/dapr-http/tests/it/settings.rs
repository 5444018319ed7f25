//! Settings from the variables daprd's tooling gives an app.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use dapr_http::{DaprClient, DaprError, DaprSettings, RetryPolicy, SettingsError};
use secrecy::ExposeSecret as _;

fn from(vars: &[(&str, &str)]) -> Result<DaprSettings, SettingsError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    DaprSettings::from_lookup(|name| vars.get(name).cloned())
}

#[test]
fn defaults_to_localhost_3500_without_token() {
    let settings = from(&[]).unwrap();
    assert_eq!(settings.http_endpoint, "http://127.0.0.1:3500");
    assert!(settings.api_token.is_none());
}

#[test]
fn host_and_port_build_the_endpoint() {
    let settings = from(&[("DAPR_HTTP_PORT", "3502")]).unwrap();
    assert_eq!(settings.http_endpoint, "http://127.0.0.1:3502");
    let settings = from(&[("DAPR_HOST", "daprd"), ("DAPR_HTTP_PORT", "3600")]).unwrap();
    assert_eq!(settings.http_endpoint, "http://daprd:3600");
    let settings = from(&[("DAPR_HOST", "::1"), ("DAPR_HTTP_PORT", "3600")]).unwrap();
    assert_eq!(settings.http_endpoint, "http://[::1]:3600");
}

#[test]
fn endpoint_wins_over_host_and_port() {
    let settings = from(&[
        ("DAPR_HTTP_ENDPOINT", "https://dapr.example:443/"),
        ("DAPR_HOST", "ignored"),
        ("DAPR_HTTP_PORT", "not-even-checked"),
    ])
    .unwrap();
    assert_eq!(settings.http_endpoint, "https://dapr.example:443");
}

#[test]
fn empty_values_count_as_unset() {
    let settings = from(&[
        ("DAPR_HTTP_ENDPOINT", ""),
        ("DAPR_HTTP_PORT", " "),
        ("DAPR_API_TOKEN", ""),
    ])
    .unwrap();
    assert_eq!(settings.http_endpoint, "http://127.0.0.1:3500");
    assert!(settings.api_token.is_none());
}

#[test]
fn bad_port_is_a_typed_error_naming_the_variable() {
    for bad in ["abc", "0", "70000", "-1", "35 00"] {
        let err = from(&[("DAPR_HTTP_PORT", bad)]).unwrap_err();
        assert_eq!(
            err,
            SettingsError::InvalidPort {
                variable: "DAPR_HTTP_PORT",
                value: bad.to_owned()
            }
        );
        assert!(err.to_string().contains("DAPR_HTTP_PORT"), "{err}");
    }
}

#[test]
fn bad_endpoint_is_a_typed_error_naming_the_variable() {
    for bad in [
        "not a url",
        "ftp://x:21",
        "localhost:3500",
        "http://x:3500/?a=b",
    ] {
        let err = from(&[("DAPR_HTTP_ENDPOINT", bad)]).unwrap_err();
        match &err {
            SettingsError::InvalidUrl {
                variable, value, ..
            } => {
                assert_eq!(*variable, "DAPR_HTTP_ENDPOINT");
                assert_eq!(value, bad);
            }
            other => panic!("{bad}: unexpected {other:?}"),
        }
        assert!(err.to_string().contains("DAPR_HTTP_ENDPOINT"), "{err}");
    }
    let err = from(&[("DAPR_HOST", "bad host")]).unwrap_err();
    assert!(
        matches!(
            err,
            SettingsError::InvalidUrl {
                variable: "DAPR_HOST",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn token_is_read_and_never_shown_by_debug() {
    let settings = from(&[("DAPR_API_TOKEN", "s3cr3t-value")]).unwrap();
    assert_eq!(
        settings.api_token.as_ref().unwrap().expose_secret(),
        "s3cr3t-value"
    );
    let shown = format!("{settings:?}");
    assert!(!shown.contains("s3cr3t-value"), "{shown}");
    let client = DaprClient::new(settings).unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains("s3cr3t-value"), "{shown}");
}

#[test]
fn client_rejects_a_bad_endpoint_from_code() {
    let err = DaprClient::new(DaprSettings::with_endpoint("nope")).unwrap_err();
    assert!(
        matches!(err, DaprError::Settings(SettingsError::InvalidUrl { .. })),
        "{err:?}"
    );
}

#[test]
fn retry_delays_grow_exponentially_up_to_the_cap() {
    let policy = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };
    assert_eq!(policy.delay_bound(1), Duration::from_millis(100));
    assert_eq!(policy.delay_bound(2), Duration::from_millis(200));
    assert_eq!(policy.delay_bound(4), Duration::from_millis(800));
    assert_eq!(policy.delay_bound(5), Duration::from_secs(1));
    assert_eq!(policy.delay_bound(40), Duration::from_secs(1));
    let delays: Vec<Duration> = (0..200).map(|_| policy.delay(3)).collect();
    assert!(delays.iter().all(|d| *d <= Duration::from_millis(400)));
    // Jitter: 200 draws from [0, 400ms] are not all equal.
    assert!(delays.iter().any(|d| *d != delays[0]));
}
