//! Message TTL on publish and the expiry check on delivery.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `expiration` for a publish, as components-contrib's `TryGetTTL` (`metadata/utils.go`) and
/// `ApplyMetadata` (`pubsub/envelope.go`) compute it. The value is read from `ttl`, else
/// `ttlInSeconds` (names case-insensitive; an empty value means no TTL). It is a Go duration
/// (negative ones count as zero), else an integer number of seconds, which must be above zero.
/// Anything else is ignored.
pub fn expiration(metadata: &BTreeMap<String, String>, now: DateTime<Utc>) -> Option<String> {
    let value = crate::metadata::get_ci(metadata, "ttl")
        .or_else(|| crate::metadata::get_ci(metadata, "ttlInSeconds"))
        .filter(|v| !v.is_empty())?;
    let nanos = match crate::go::parse_go_duration(value) {
        Some(nanos) => nanos.max(0),
        None => {
            let secs: i64 = value.parse().ok().filter(|s| *s > 0)?;
            // Go multiplies by `time.Second` with wrap-around and only repairs a negative result.
            let nanos = secs.wrapping_mul(1_000_000_000);
            if nanos < 0 { i64::MAX } else { nanos }
        }
    };
    let at = now.checked_add_signed(chrono::Duration::nanoseconds(nanos))?;
    Some(at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Whether `ce` carries an `expiration` strictly before `now` (components-contrib's `HasExpired`
/// in `pubsub/envelope.go`); one that does not parse never expires.
pub fn is_expired(ce: &Map<String, Value>, now: DateTime<Utc>) -> bool {
    ce.get("expiration")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .is_some_and(|exp| exp.with_timezone(&Utc) < now)
}
