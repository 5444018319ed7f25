//! Component metadata of `pubsub.kafka`, read the way components-contrib does
//! (`common/component/kafka/metadata.go getKafkaMetadata`, `kafka.go Init`, `auth.go`): key names
//! are case-insensitive except the few the source reads with their exact spelling, durations are
//! Go durations or bare seconds, and the `backOff*` retry keys take bare milliseconds.
//!
//! Features the local sidecar does not implement (mTLS, OIDC, certificate and AWS IAM
//! authentication, the schema registry, sticky rebalancing) are refused at load time with an
//! error naming the component file and the key, instead of being silently ignored.

use crate::backoff::BackoffPolicy;
use crate::reader::Reader;
use sidecar_core::resources::{ComponentSpec, ResourceError};
use std::time::Duration;

/// How the client authenticates (`authType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// SASL with `mechanism` (`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`).
    Password {
        username: String,
        password: Redacted,
        mechanism: &'static str,
    },
}

/// A secret whose `Debug` output hides it, so settings can be logged without leaking it.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// TLS towards the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// PEM text of the CA that signed the brokers' certificates (`caCert`); system roots without.
    pub ca_cert: Option<String>,
    pub skip_verify: bool,
}

/// Where a group without a committed offset starts (`initialOffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialOffset {
    Newest,
    Oldest,
}

/// Parsed `pubsub.kafka` metadata.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port,host:port`.
    pub brokers: String,
    pub auth: Auth,
    /// `None` = plaintext.
    pub tls: Option<Tls>,
    /// `consumerGroup` as written (templates are resolved per app).
    pub consumer_group: Option<String>,
    /// `clientId`; Sarama's default is `sarama`.
    pub client_id: String,
    pub initial_offset: InitialOffset,
    /// Producer limit on one record (`maxMessageBytes`; Sarama's default 1 MiB).
    pub max_message_bytes: usize,
    /// Whether a failed message is retried under [`KafkaSettings::backoff`] (`consumeRetryEnabled`).
    pub consume_retry: bool,
    /// Pause before the consumer rejoins after an error (`consumeRetryInterval`).
    pub consume_retry_interval: Duration,
    pub backoff: BackoffPolicy,
    pub heartbeat_interval: Duration,
    pub session_timeout: Duration,
    /// librdkafka `compression.codec`.
    pub compression: &'static str,
    /// librdkafka `partition.assignment.strategy`.
    pub assignment_strategy: &'static str,
    /// Records queued per partition before fetching pauses (`channelBufferSize`).
    pub channel_buffer_size: usize,
    pub fetch_min_bytes: usize,
    pub fetch_default_bytes: usize,
    pub metadata_refresh: Duration,
    /// URL-query-escape header values delivered to the app (`escapeHeaders`).
    pub escape_headers: bool,
    /// Publish metadata keys that do not become record headers (`excludeHeaderMetaRegex`).
    pub exclude_header_meta: Option<regex::Regex>,
}

/// Sarama's `Producer.MaxMessageBytes` default (`maxMessageBytes` unset).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_576;

/// Keys of features the local sidecar does not implement, with what to use instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "clientCert",
        "mTLS client certificates are not supported by the local sidecar",
    ),
    (
        "clientKey",
        "mTLS client certificates are not supported by the local sidecar",
    ),
    (
        "oidcTokenEndpoint",
        "OIDC authentication is not supported by the local sidecar",
    ),
    (
        "oidcClientID",
        "OIDC authentication is not supported by the local sidecar",
    ),
    (
        "oidcClientSecret",
        "OIDC authentication is not supported by the local sidecar",
    ),
    (
        "oidcScopes",
        "OIDC authentication is not supported by the local sidecar",
    ),
    (
        "oidcExtensions",
        "OIDC authentication is not supported by the local sidecar",
    ),
    (
        "awsRegion",
        "AWS IAM authentication is not supported by the local sidecar",
    ),
    (
        "awsAccessKey",
        "AWS IAM authentication is not supported by the local sidecar",
    ),
    (
        "awsSecretKey",
        "AWS IAM authentication is not supported by the local sidecar",
    ),
    (
        "awsSessionToken",
        "AWS IAM authentication is not supported by the local sidecar",
    ),
    (
        "awsIamRoleArn",
        "AWS IAM authentication is not supported by the local sidecar",
    ),
    (
        "awsStsSessionName",
        "AWS IAM authentication is not supported by the local sidecar",
    ),
    (
        "schemaRegistryURL",
        "the schema registry (Avro) is not supported by the local sidecar",
    ),
    (
        "schemaRegistryAPIKey",
        "the schema registry (Avro) is not supported by the local sidecar",
    ),
    (
        "schemaRegistryAPISecret",
        "the schema registry (Avro) is not supported by the local sidecar",
    ),
    (
        "schemaCachingEnabled",
        "the schema registry (Avro) is not supported by the local sidecar",
    ),
    (
        "schemaLatestVersionCacheTTL",
        "the schema registry (Avro) is not supported by the local sidecar",
    ),
    (
        "useAvroJSON",
        "the schema registry (Avro) is not supported by the local sidecar",
    ),
];

const SECOND: Duration = Duration::from_secs(1);
const MILLI: Duration = Duration::from_millis(1);

impl KafkaSettings {
    /// Reads and validates the metadata of `spec`.
    pub fn from_spec(spec: &ComponentSpec) -> Result<Self, ResourceError> {
        let r = Reader { spec };
        for (key, why) in UNSUPPORTED {
            if r.get(key).is_some() {
                return Err(r.error(key, *why));
            }
        }
        let brokers = r
            .get("brokers")
            .ok_or_else(|| r.error("brokers", "required (comma-separated host:port list)"))?;
        let brokers = brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        let auth = read_auth(&r)?;
        let tls = read_tls(&r, &auth)?;
        let initial_offset = match r.get_exact("initialOffset") {
            None => InitialOffset::Newest,
            Some(v) if v.eq_ignore_ascii_case("newest") => InitialOffset::Newest,
            Some(v) if v.eq_ignore_ascii_case("oldest") => InitialOffset::Oldest,
            Some(v) => {
                return Err(r.error(
                    "initialOffset",
                    format!("{v:?} is not valid (\"newest\" or \"oldest\")"),
                ));
            }
        };
        let max_message_bytes = r
            .parse::<usize>("maxMessageBytes", r.get("maxMessageBytes"))?
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        let compression = match r.get("compression").map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") => "none",
            Some("gzip") => "gzip",
            Some("snappy") => "snappy",
            Some("lz4") => "lz4",
            Some("zstd") => "zstd",
            Some(other) => {
                return Err(r.error(
                    "compression",
                    format!("{other:?} is not valid (none, gzip, snappy, lz4 or zstd)"),
                ));
            }
        };
        let assignment_strategy = match r
            .get("consumerGroupRebalanceStrategy")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("roundrobin") => "roundrobin",
            Some("sticky") => {
                return Err(r.error(
                    "consumerGroupRebalanceStrategy",
                    "\"sticky\" is not supported by the local sidecar (use range or roundrobin)",
                ));
            }
            // Unknown values fall back to range, as in `metadata.go`.
            _ => "range",
        };
        let exclude_header_meta = r
            .get_exact("excludeHeaderMetaRegex")
            .map(|re| {
                regex::Regex::new(re)
                    .map_err(|e| r.error("excludeHeaderMetaRegex", format!("{re:?}: {e}")))
            })
            .transpose()?;
        if let Some(v) = r.get("version") {
            validate_version(v).map_err(|m| r.error("version", m))?;
        }
        Ok(Self {
            brokers,
            auth,
            tls,
            consumer_group: r.get("consumerGroup").map(String::from),
            client_id: r.get("clientId").unwrap_or("sarama").to_string(),
            initial_offset,
            max_message_bytes,
            consume_retry: r.bool("consumeRetryEnabled", true)?,
            consume_retry_interval: r
                .duration(
                    "consumeRetryInterval",
                    r.get_exact("consumeRetryInterval"),
                    MILLI,
                )?
                .unwrap_or(Duration::from_millis(100)),
            backoff: BackoffPolicy::from_metadata(&r)?,
            heartbeat_interval: r
                .duration("heartbeatInterval", r.get("heartbeatInterval"), SECOND)?
                .unwrap_or(Duration::from_secs(3)),
            session_timeout: r
                .duration("sessionTimeout", r.get("sessionTimeout"), SECOND)?
                .unwrap_or(Duration::from_secs(10)),
            compression,
            assignment_strategy,
            channel_buffer_size: r
                .parse::<usize>("channelBufferSize", r.get_exact("channelBufferSize"))?
                .filter(|n| *n > 0)
                .unwrap_or(256),
            fetch_min_bytes: r
                .parse("consumerFetchMin", r.get_exact("consumerFetchMin"))?
                .unwrap_or(1),
            fetch_default_bytes: r
                .parse("consumerFetchDefault", r.get_exact("consumerFetchDefault"))?
                .unwrap_or(1_048_576),
            metadata_refresh: r
                .duration(
                    "clientConnectionTopicMetadataRefreshInterval",
                    r.get("clientConnectionTopicMetadataRefreshInterval"),
                    SECOND,
                )?
                .unwrap_or(Duration::from_secs(8 * 60)),
            escape_headers: r.bool("escapeHeaders", false)?,
            exclude_header_meta,
        })
    }
}

/// `authType`, or the legacy `authRequired` when it is absent (`metadata.go`).
fn read_auth(r: &Reader<'_>) -> Result<Auth, ResourceError> {
    let auth_type = match r.get("authType") {
        Some(t) => t.to_string(),
        None => match r.get("authRequired") {
            Some(_) if r.bool("authRequired", false)? => {
                if r.get("saslPassword").is_some() {
                    "password".into()
                } else {
                    "mtls".into()
                }
            }
            Some(_) => "none".into(),
            None => {
                return Err(r.error(
                    "authType",
                    "required (none or password; the local sidecar does not implement mtls, oidc, certificate or awsiam)",
                ));
            }
        },
    };
    match auth_type.to_ascii_lowercase().as_str() {
        "none" => Ok(Auth::None),
        "password" => {
            let username = r
                .get("saslUsername")
                .ok_or_else(|| r.error("saslUsername", "required with authType password"))?;
            let password = r
                .spec
                .meta("saslPassword")
                .filter(|p| !p.is_empty())
                .ok_or_else(|| r.error("saslPassword", "required with authType password"))?;
            // `auth.go updatePasswordAuthInfo`: exactly these two strings select SCRAM.
            let mechanism = match r.get("saslMechanism") {
                Some("SHA-256") => "SCRAM-SHA-256",
                Some("SHA-512") => "SCRAM-SHA-512",
                _ => "PLAIN",
            };
            Ok(Auth::Password {
                username: username.to_string(),
                password: Redacted(password.to_string()),
                mechanism,
            })
        }
        "mtls" | "oidc" | "certificate" | "awsiam" => Err(r.error(
            "authType",
            format!("{auth_type:?} is not supported by the local sidecar (none or password)"),
        )),
        _ => Err(r.error(
            "authType",
            format!(
                "{auth_type:?} is not valid (none, password, mtls, oidc, certificate or awsiam)"
            ),
        )),
    }
}

/// TLS is on unless `disableTls` is true or `authType` is none, which also ignores `caCert`
/// (`metadata.go getKafkaMetadata`, `kafka.go Init`).
fn read_tls(r: &Reader<'_>, auth: &Auth) -> Result<Option<Tls>, ResourceError> {
    let disabled = r.bool("disableTls", false)?;
    if disabled || *auth == Auth::None {
        return Ok(None);
    }
    let ca_cert = r.get("caCert").map(String::from);
    if let Some(pem) = &ca_cert
        && !pem.contains("-----BEGIN CERTIFICATE-----")
    {
        return Err(r.error(
            "caCert",
            "not a PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(Some(Tls {
        ca_cert,
        skip_verify: r.bool("skipVerify", false)?,
    }))
}

/// Sarama parses `version` as `x.y.z`; librdkafka negotiates versions itself, so the value only
/// has to be well formed.
fn validate_version(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split('.').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if (2..=4).contains(&parts.len()) && numeric {
        Ok(())
    } else {
        Err(format!("{v:?} is not a Kafka version (e.g. 2.0.0)"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(pairs: &[(&str, &str)]) -> ComponentSpec {
        pairs.iter().fold(
            ComponentSpec::new("todo-pubsub", "pubsub.kafka"),
            |s, (k, v)| s.with_metadata(k, v),
        )
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        KafkaSettings::from_spec(&spec(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_follow_components_contrib() {
        let s = KafkaSettings::from_spec(&spec(&[
            ("brokers", "a:9092, b:9092"),
            ("authType", "none"),
        ]))
        .unwrap();
        assert_eq!(s.brokers, "a:9092,b:9092");
        assert_eq!((s.auth, s.tls), (Auth::None, None));
        assert_eq!(s.client_id, "sarama");
        assert_eq!(s.initial_offset, InitialOffset::Newest);
        assert_eq!(s.max_message_bytes, 1_048_576);
        assert!(s.consume_retry);
        assert_eq!(s.backoff, BackoffPolicy::default());
        assert_eq!(s.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(s.session_timeout, Duration::from_secs(10));
        assert_eq!(s.assignment_strategy, "range");
    }

    #[test]
    fn password_auth_selects_the_sasl_mechanism_and_tls() {
        let base = [
            ("brokers", "k:9093"),
            ("authType", "password"),
            ("saslUsername", "svc"),
            ("saslPassword", "s3cret"),
        ];
        let plain = KafkaSettings::from_spec(&spec(&base)).unwrap();
        assert!(matches!(
            plain.auth,
            Auth::Password {
                mechanism: "PLAIN",
                ..
            }
        ));
        assert!(
            !format!("{plain:?}").contains("s3cret"),
            "the password leaks into Debug"
        );
        assert_eq!(
            plain.tls,
            Some(Tls {
                ca_cert: None,
                skip_verify: false
            })
        );
        let mut scram = base.to_vec();
        scram.extend([("saslMechanism", "SHA-512"), ("disableTls", "true")]);
        let scram = KafkaSettings::from_spec(&spec(&scram)).unwrap();
        assert!(matches!(
            scram.auth,
            Auth::Password {
                mechanism: "SCRAM-SHA-512",
                ..
            }
        ));
        assert_eq!(scram.tls, None);
        let missing = err(&base[..3]);
        assert!(missing.contains("spec.metadata.saslPassword"), "{missing}");
    }

    #[test]
    fn unsupported_features_are_refused_with_file_and_key() {
        for (pairs, key) in [
            (vec![("brokers", "k:1"), ("authType", "oidc")], "authType"),
            (vec![("brokers", "k:1"), ("authType", "mtls")], "authType"),
            (
                vec![
                    ("brokers", "k:1"),
                    ("authType", "none"),
                    ("clientCert", "x"),
                ],
                "clientCert",
            ),
            (
                vec![
                    ("brokers", "k:1"),
                    ("authType", "none"),
                    ("schemaRegistryURL", "http://r"),
                ],
                "schemaRegistryURL",
            ),
            (
                vec![
                    ("brokers", "k:1"),
                    ("authType", "none"),
                    ("consumerGroupRebalanceStrategy", "sticky"),
                ],
                "consumerGroupRebalanceStrategy",
            ),
        ] {
            let e = err(&pairs);
            assert!(
                e.contains(&format!("spec.metadata.{key}")) && e.contains("not supported"),
                "{e}"
            );
        }
    }

    #[test]
    fn required_and_malformed_keys_are_named() {
        assert!(err(&[("authType", "none")]).contains("spec.metadata.brokers"));
        assert!(err(&[("brokers", "k:1")]).contains("spec.metadata.authType"));
        let offset = err(&[
            ("brokers", "k:1"),
            ("authType", "none"),
            ("initialOffset", "latest"),
        ]);
        assert!(
            offset.contains("initialOffset") && offset.contains("latest"),
            "{offset}"
        );
        let timeout = err(&[
            ("brokers", "k:1"),
            ("authType", "none"),
            ("sessionTimeout", "soon"),
        ]);
        assert!(
            timeout.contains("spec.metadata.sessionTimeout"),
            "{timeout}"
        );
    }

    #[test]
    fn legacy_auth_required_and_exact_spelling_keys() {
        let s = KafkaSettings::from_spec(&spec(&[
            ("brokers", "k:1"),
            ("authRequired", "false"),
            ("initialOffset", "oldest"),
            ("consumeRetryInterval", "250"),
            ("sessionTimeout", "30"),
        ]))
        .unwrap();
        assert_eq!(s.auth, Auth::None);
        assert_eq!(s.initial_offset, InitialOffset::Oldest);
        assert_eq!(s.consume_retry_interval, Duration::from_millis(250));
        assert_eq!(s.session_timeout, Duration::from_secs(30));
        // `initialOffset` is read with its exact spelling, so `initialoffset` is not it.
        let other = KafkaSettings::from_spec(&spec(&[
            ("brokers", "k:1"),
            ("authType", "none"),
            ("initialoffset", "oldest"),
        ]))
        .unwrap();
        assert_eq!(other.initial_offset, InitialOffset::Newest);
    }
}
