//! Component metadata shared by `state.redis` and `pubsub.redis`, parsed the way components-contrib
//! reads it (case-insensitive names, durations as Go durations or plain milliseconds).
//!
//! Connection features the local sidecar does not implement (cluster, Sentinel failover, TLS) are
//! rejected at load time with an error naming the component file and the field, instead of being
//! silently ignored.

use sidecar_core::go;
use sidecar_core::resources::{ComponentSpec, ResourceError};
use std::time::Duration;

/// Parsed Redis connection and component settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    /// Reconnection attempts of the connection manager (`redisMaxRetries`; `-1` = none).
    pub max_retries: usize,
    pub min_retry_interval: Duration,
    pub max_retry_interval: Duration,
    pub dial_timeout: Duration,
    /// Per-command response timeout (`readTimeout`).
    pub read_timeout: Duration,
    /// State only: default `ttlInSeconds`.
    pub ttl_seconds: Option<i64>,
    /// Pub/sub only: `consumerID` as written (templates resolved by the core per app).
    pub consumer_id: Option<String>,
    pub processing_timeout: Duration,
    pub redeliver_interval: Duration,
    pub queue_depth: usize,
    pub concurrency: usize,
    pub max_len_approx: Option<u64>,
    pub stream_ttl: Option<Duration>,
}

/// Default `processingTimeout` (source default; the docs swap the two).
pub const DEFAULT_PROCESSING_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `redeliverInterval`.
pub const DEFAULT_REDELIVER_INTERVAL: Duration = Duration::from_secs(15);

struct Reader<'a> {
    spec: &'a ComponentSpec,
}

impl Reader<'_> {
    fn error(&self, key: &str, message: impl Into<String>) -> ResourceError {
        ResourceError::Field {
            file: self.spec.source.clone(),
            kind: "Component".into(),
            name: self.spec.name.clone(),
            field: format!("spec.metadata.{key}"),
            message: message.into(),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.spec.meta(key).map(str::trim).filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ResourceError>
    where
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| self.error(key, format!("{v:?} is not valid: {e}")))
            })
            .transpose()
    }

    fn bool(&self, key: &str) -> Result<bool, ResourceError> {
        let Some(v) = self.get(key) else {
            return Ok(false);
        };
        go::parse_truthy(v).ok_or_else(|| {
            let lower = v.to_ascii_lowercase();
            self.error(key, format!("{lower:?} is not a boolean"))
        })
    }

    /// A components-contrib duration: a plain integer is milliseconds, otherwise a Go duration.
    fn duration(&self, key: &str) -> Result<Option<Duration>, ResourceError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        if let Ok(ms) = v.parse::<i64>() {
            return Ok(Some(Duration::from_millis(ms.max(0).unsigned_abs())));
        }
        go::parse_duration(v).map(Some).ok_or_else(|| {
            self.error(
                key,
                format!("{v:?} is not a duration (e.g. 500ms, 15s, or milliseconds)"),
            )
        })
    }
}

impl RedisSettings {
    /// Reads and validates the metadata of `spec`.
    pub fn from_spec(spec: &ComponentSpec) -> Result<Self, ResourceError> {
        let r = Reader { spec };
        let raw_host = r
            .get("redisHost")
            .ok_or_else(|| r.error("redisHost", "required (host:port of the Redis server)"))?;
        if raw_host.contains(',') {
            return Err(r.error(
                "redisHost",
                "several hosts (cluster or Sentinel) are not supported by the local sidecar",
            ));
        }
        let port_override: Option<u16> = r.parse("redisPort")?;
        let (host, port) =
            split_host(raw_host, port_override).map_err(|m| r.error("redisHost", m))?;
        if let Some(t) = r.get("redisType")
            && !t.eq_ignore_ascii_case("node")
        {
            return Err(r.error(
                "redisType",
                format!("{t:?} is not supported by the local sidecar (only \"node\")"),
            ));
        }
        if r.bool("failover")? {
            return Err(r.error(
                "failover",
                "Sentinel failover is not supported by the local sidecar",
            ));
        }
        if r.bool("enableTLS")? {
            return Err(r.error(
                "enableTLS",
                "TLS connections (rediss://) are not supported by the local sidecar; use a plain local Redis",
            ));
        }
        if r.bool("useEntraID")? {
            return Err(r.error(
                "useEntraID",
                "Entra ID authentication is not supported by the local sidecar",
            ));
        }
        let max_retries: i64 = r.parse("redisMaxRetries")?.unwrap_or(3);
        let queue_depth: usize = r.parse("queueDepth")?.unwrap_or(100);
        let concurrency: usize = r.parse("concurrency")?.unwrap_or(10);
        if queue_depth == 0 {
            return Err(r.error("queueDepth", "must be at least 1"));
        }
        if concurrency == 0 {
            return Err(r.error("concurrency", "must be at least 1"));
        }
        Ok(Self {
            host,
            port,
            username: r.get("redisUsername").map(String::from),
            password: spec
                .meta("redisPassword")
                .filter(|p| !p.is_empty())
                .map(String::from),
            db: r.parse("redisDB")?.unwrap_or(0),
            max_retries: usize::try_from(max_retries).unwrap_or(0),
            min_retry_interval: r
                .duration("redisMinRetryInterval")?
                .unwrap_or(Duration::from_millis(8)),
            max_retry_interval: r
                .duration("redisMaxRetryInterval")?
                .unwrap_or(Duration::from_millis(512)),
            dial_timeout: r.duration("dialTimeout")?.unwrap_or(Duration::from_secs(5)),
            read_timeout: r.duration("readTimeout")?.unwrap_or(Duration::from_secs(3)),
            ttl_seconds: r.parse("ttlInSeconds")?,
            consumer_id: r.get("consumerID").map(String::from),
            processing_timeout: r
                .duration("processingTimeout")?
                .unwrap_or(DEFAULT_PROCESSING_TIMEOUT),
            redeliver_interval: r
                .duration("redeliverInterval")?
                .unwrap_or(DEFAULT_REDELIVER_INTERVAL),
            queue_depth,
            concurrency,
            max_len_approx: r.parse::<u64>("maxLenApprox")?.filter(|n| *n > 0),
            stream_ttl: r.duration("streamTTL")?.filter(|d| !d.is_zero()),
        })
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets); the port defaults to `redisPort`, then 6379.
fn split_host(raw: &str, port_override: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("{raw:?}: missing `]`"))?;
        (h, tail.strip_prefix(':'))
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (raw, None),
        }
    };
    let port = match (port, port_override) {
        (Some(p), over) => {
            let p: u16 = p
                .parse()
                .map_err(|e| format!("{raw:?}: port {p:?} is not valid: {e}"))?;
            if over.is_some_and(|o| o != p) {
                return Err(format!(
                    "{raw:?} already names port {p}, which differs from redisPort"
                ));
            }
            p
        }
        (None, Some(o)) => o,
        (None, None) => 6379,
    };
    if host.is_empty() {
        return Err(format!("{raw:?}: empty host name"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(pairs: &[(&str, &str)]) -> ComponentSpec {
        pairs.iter().fold(
            ComponentSpec::new("todo-state", "state.redis"),
            |s, (k, v)| s.with_metadata(k, v),
        )
    }

    #[test]
    fn defaults_follow_components_contrib() {
        let s = RedisSettings::from_spec(&spec(&[("redisHost", "localhost:6380")])).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.db), ("localhost", 6380, 0));
        assert_eq!(s.processing_timeout, Duration::from_secs(60));
        assert_eq!(s.redeliver_interval, Duration::from_secs(15));
        assert_eq!((s.queue_depth, s.concurrency), (100, 10));
        assert_eq!(s.password, None);
    }

    #[test]
    fn durations_accept_milliseconds_and_go_syntax() {
        let s = RedisSettings::from_spec(&spec(&[
            ("redisHost", "h"),
            ("processingTimeout", "250"),
            ("redeliverInterval", "1m30s"),
        ]))
        .unwrap();
        assert_eq!(s.port, 6379);
        assert_eq!(s.processing_timeout, Duration::from_millis(250));
        assert_eq!(s.redeliver_interval, Duration::from_secs(90));
    }

    #[test]
    fn errors_name_the_field() {
        let missing = RedisSettings::from_spec(&spec(&[]))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("spec.metadata.redisHost"), "{missing}");
        let bad = RedisSettings::from_spec(&spec(&[("redisHost", "h"), ("redisDB", "x")]))
            .unwrap_err()
            .to_string();
        assert!(bad.contains("spec.metadata.redisDB"), "{bad}");
        let tls = RedisSettings::from_spec(&spec(&[("redisHost", "h"), ("enableTLS", "true")]))
            .unwrap_err()
            .to_string();
        assert!(
            tls.contains("enableTLS") && tls.contains("not supported"),
            "{tls}"
        );
    }

    #[test]
    fn ipv6_and_port_conflicts() {
        assert_eq!(
            split_host("[::1]:7000", None).unwrap(),
            ("::1".into(), 7000)
        );
        assert!(split_host("h:7000", Some(7001)).is_err());
        assert_eq!(split_host("h", Some(7001)).unwrap(), ("h".into(), 7001));
    }
}
