//! Read-only state: the keys of the run's state stores (every key is `<app-id>||<key>`, so an
//! app's prefix selects its keys), each with ETag, TTL and size, and one value as text. Keys are
//! enumerated by the store itself (`state.in-memory` walks its map, `state.redis` SCANs); the
//! console lists at most [`crate::Limits::state_keys`] of them and reads nothing else.

use serde::Serialize;
use sidecar_core::Runtime;
use sidecar_core::components::StateItem;

/// A key in the list.
#[derive(Debug, Clone, Serialize)]
pub struct KeyJson {
    pub store: String,
    pub key: String,
    pub etag: Option<String>,
    pub ttl_seconds: Option<i64>,
    pub size: usize,
}

/// One value.
#[derive(Debug, Clone, Serialize)]
pub struct ValueJson {
    pub store: String,
    pub key: String,
    pub etag: Option<String>,
    pub ttl_seconds: Option<i64>,
    /// UTF-8 text (lossy), JSON pretty-printed; cut at the console's limit.
    pub value_text: String,
    /// The value was longer than the limit and is cut.
    pub truncated: bool,
}

/// Why state cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum StateViewError {
    #[error("no state store named {0:?} in this run")]
    NoStore(String),
    #[error("no key {key:?} in state store {store:?}")]
    NoKey { store: String, key: String },
    #[error("state store {store:?} failed: {reason}")]
    Store { store: String, reason: String },
}

fn state_stores(runtime: &Runtime) -> Vec<String> {
    runtime
        .resources()
        .components
        .iter()
        .filter(|c| runtime.state_component(&c.name).is_some())
        .map(|c| c.name.clone())
        .collect()
}

/// Keys starting with `prefix` in every state store, at most `limit`.
pub async fn list(
    runtime: &Runtime,
    prefix: &str,
    limit: usize,
) -> Result<Vec<KeyJson>, StateViewError> {
    let mut out = Vec::new();
    for store in state_stores(runtime) {
        let Some(component) = runtime.state_component(&store) else {
            continue;
        };
        let keys = component
            .store
            .keys()
            .await
            .map_err(|e| StateViewError::Store {
                store: store.clone(),
                reason: e.to_string(),
            })?;
        for key in keys.into_iter().filter(|k| k.starts_with(prefix)) {
            if out.len() >= limit {
                return Ok(out);
            }
            // A key that expired or was deleted since the listing is left out.
            if let Ok(Some(item)) = component.store.get(&key).await {
                out.push(KeyJson {
                    store: store.clone(),
                    etag: item.etag.clone(),
                    ttl_seconds: ttl_seconds(&item),
                    size: item.data.len(),
                    key,
                });
            }
        }
    }
    Ok(out)
}

/// One key's value.
pub async fn get(
    runtime: &Runtime,
    store: &str,
    key: &str,
    max_bytes: usize,
) -> Result<ValueJson, StateViewError> {
    let component = runtime
        .state_component(store)
        .ok_or_else(|| StateViewError::NoStore(store.to_owned()))?;
    let item = component
        .store
        .get(key)
        .await
        .map_err(|e| StateViewError::Store {
            store: store.to_owned(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| StateViewError::NoKey {
            store: store.to_owned(),
            key: key.to_owned(),
        })?;
    let (value_text, truncated) = text(&item.data, max_bytes);
    Ok(ValueJson {
        store: store.to_owned(),
        key: key.to_owned(),
        etag: item.etag.clone(),
        ttl_seconds: ttl_seconds(&item),
        value_text,
        truncated,
    })
}

/// Seconds left until `ttlExpireTime` (RFC 3339), when the store reports one.
fn ttl_seconds(item: &StateItem) -> Option<i64> {
    let expires = item.metadata.get("ttlExpireTime")?;
    let at = chrono::DateTime::parse_from_rfc3339(expires).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .num_seconds()
            .max(0),
    )
}

fn text(data: &[u8], max_bytes: usize) -> (String, bool) {
    if data.len() <= max_bytes
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(pretty) = serde_json::to_string_pretty(&value)
    {
        return (pretty, false);
    }
    let cut = data.len().min(max_bytes);
    (
        String::from_utf8_lossy(&data[..cut]).into_owned(),
        cut < data.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_printed_and_long_values_cut() {
        assert_eq!(
            text(br#"{"a":1}"#, 100),
            ("{\n  \"a\": 1\n}".to_owned(), false)
        );
        assert_eq!(text(b"abcdef", 3), ("abc".to_owned(), true));
    }
}
