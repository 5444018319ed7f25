//! `bulkSubscribe` settings of a subscription, from either form: the programmatic element
//! (`pkg/runtime/pubsub/subscriptions.go BulkSubscribeJSON`) or the declarative
//! `spec.bulkSubscribe` (`pkg/apis/subscriptions/v2alpha1/types.go BulkSubscribe`).

use serde::Deserialize;
use std::time::Duration;

/// Entries per batch when the subscription leaves `maxMessagesCount` at 0 or out
/// (`pkg/runtime/pubsub/default_bulksub.go`, 100).
pub const DEFAULT_MAX_MESSAGES: usize = 100;
/// Most entries per batch this sidecar accepts. daprd has no limit of its own, but sizes its
/// batch buffers by the count up front (`pkg/runtime/pubsub/default_bulksub.go`,
/// `defaultBulkSubscriber.BulkSubscribe`), so an absurd count exhausts its memory; here every
/// entry waiting for its batch holds one of the subscription's delivery workers, and a batch is
/// one request body to the app (tens of megabytes at 10,000 events of a few KB). A larger count
/// is refused when the subscription is read, with the field named, rather than starting that
/// many workers.
pub const MAX_MESSAGES_LIMIT: usize = 10_000;
/// Longest wait for a batch to fill when `maxAwaitDurationMs` is 0 or out (same file, 1000 ms).
pub const DEFAULT_MAX_AWAIT: Duration = Duration::from_millis(1000);

/// How a bulk subscription batches its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkSettings {
    /// Most entries in one batch.
    pub max_messages: usize,
    /// Longest time the first message of a batch waits for the batch to fill.
    pub max_await: Duration,
}

/// The element as both forms spell it; numbers are int32 in daprd, so a value outside that
/// range is refused rather than wrapped.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkSubscribeSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub max_messages_count: i32,
    #[serde(default)]
    pub max_await_duration_ms: i32,
}

impl BulkSubscribeSpec {
    /// The batching of an enabled element; `None` when bulk delivery is off (only
    /// `enabled: true` switches it on, `pkg/runtime/subscription/subscription.go New`).
    /// A count or wait of 0 or below means the default, as in daprd's default bulk subscriber;
    /// a count above [`MAX_MESSAGES_LIMIT`] is an error about `maxMessagesCount`.
    pub fn settings(&self) -> Result<Option<BulkSettings>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let max_messages = usize::try_from(self.max_messages_count)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_MAX_MESSAGES);
        if max_messages > MAX_MESSAGES_LIMIT {
            return Err(format!(
                "{max_messages} is above the most entries this sidecar batches \
                 ({MAX_MESSAGES_LIMIT})"
            ));
        }
        let max_await = u64::try_from(self.max_await_duration_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_MAX_AWAIT);
        Ok(Some(BulkSettings {
            max_messages,
            max_await,
        }))
    }
}

/// Decodes the programmatic element, matching its keys case-insensitively like Go's decoder.
pub fn from_json(value: &serde_json::Value) -> Result<Option<BulkSettings>, String> {
    let serde_json::Value::Object(obj) = value else {
        return match value {
            serde_json::Value::Null => Ok(None),
            other => Err(format!(
                "field bulkSubscribe: expected an object, got {other}"
            )),
        };
    };
    let mut spec = BulkSubscribeSpec::default();
    for (key, v) in obj {
        let int = |name: &str| -> Result<i32, String> {
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| {
                    format!("field bulkSubscribe.{name}: expected a 32-bit integer, got {v}")
                })
        };
        if key.eq_ignore_ascii_case("enabled") {
            spec.enabled = v.as_bool().ok_or_else(|| {
                format!("field bulkSubscribe.enabled: expected a boolean, got {v}")
            })?;
        } else if key.eq_ignore_ascii_case("maxMessagesCount") {
            spec.max_messages_count = int("maxMessagesCount")?;
        } else if key.eq_ignore_ascii_case("maxAwaitDurationMs") {
            spec.max_await_duration_ms = int("maxAwaitDurationMs")?;
        }
    }
    spec.settings()
        .map_err(|e| format!("field bulkSubscribe.maxMessagesCount: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn only_enabled_switches_bulk_on_and_zero_means_default() {
        assert_eq!(from_json(&json!({"maxMessagesCount": 5})).unwrap(), None);
        assert_eq!(from_json(&json!(null)).unwrap(), None);
        assert_eq!(
            from_json(&json!({"enabled": true})).unwrap(),
            Some(BulkSettings {
                max_messages: DEFAULT_MAX_MESSAGES,
                max_await: DEFAULT_MAX_AWAIT
            })
        );
        assert_eq!(
            from_json(&json!({"Enabled": true, "maxmessagescount": 7, "maxAwaitDurationMs": 25}))
                .unwrap(),
            Some(BulkSettings {
                max_messages: 7,
                max_await: Duration::from_millis(25)
            })
        );
        assert_eq!(
            from_json(&json!({"enabled": true, "maxMessagesCount": -3, "maxAwaitDurationMs": 0}))
                .unwrap()
                .map(|s| s.max_messages),
            Some(DEFAULT_MAX_MESSAGES)
        );
    }

    #[test]
    fn malformed_elements_name_the_field() {
        let e = from_json(&json!({"enabled": "yes"})).unwrap_err();
        assert!(e.contains("bulkSubscribe.enabled"), "{e}");
        let e = from_json(&json!({"enabled": true, "maxMessagesCount": 1u64 << 40})).unwrap_err();
        assert!(e.contains("maxMessagesCount"), "{e}");
        assert!(from_json(&json!([1])).is_err());
    }

    #[test]
    fn a_count_above_the_limit_is_refused_and_the_limit_itself_accepted() {
        let e = from_json(&json!({"enabled": true, "maxMessagesCount": i32::MAX})).unwrap_err();
        assert!(
            e.contains("bulkSubscribe.maxMessagesCount") && e.contains("2147483647"),
            "{e}"
        );
        // Off, the count is not looked at: no batching happens.
        assert_eq!(
            from_json(&json!({"enabled": false, "maxMessagesCount": i32::MAX})).unwrap(),
            None
        );
        let limit = i32::try_from(MAX_MESSAGES_LIMIT).unwrap();
        assert_eq!(
            from_json(&json!({"enabled": true, "maxMessagesCount": limit}))
                .unwrap()
                .map(|s| s.max_messages),
            Some(MAX_MESSAGES_LIMIT)
        );
    }
}
