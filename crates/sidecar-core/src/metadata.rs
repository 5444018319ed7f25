//! Request metadata (`metadata.<k>` query parameters), state key prefixes and component metadata
//! templates.

use crate::resources::ComponentSpec;
use std::collections::BTreeMap;

/// Extracts `metadata.<k>=v` query parameters: the prefix is stripped, names are case-sensitive
/// and only the first value of a repeated parameter counts.
pub fn query_metadata(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        if let Some(name) = k.strip_prefix("metadata.") {
            out.entry(name.to_string()).or_insert_with(|| v.clone());
        }
    }
    out
}

/// First value of query parameter `name`.
pub fn query_param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Case-insensitive lookup in a metadata map.
pub fn get_ci<'a>(map: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// Separator between the key prefix and the key.
pub const KEY_SEPARATOR: &str = "||";

/// The prefix daprd puts before every key of `store` for `app_id` (`None` = no prefix).
///
/// `keyPrefix` is lower-cased: `appid` (default), `name`, `namespace` (`<NAMESPACE>.<appid>`,
/// `appid` when `NAMESPACE` is unset), `none`, or any other literal string.
pub fn key_prefix(store: &ComponentSpec, app_id: &str) -> Option<String> {
    let strategy = store
        .meta("keyPrefix")
        .map(str::to_lowercase)
        .unwrap_or_else(|| "appid".into());
    match strategy.as_str() {
        "" | "appid" => Some(app_id.to_string()),
        "name" => Some(store.name.clone()),
        "none" => None,
        "namespace" => match std::env::var("NAMESPACE") {
            Ok(ns) if !ns.is_empty() => Some(format!("{ns}.{app_id}")),
            _ => Some(app_id.to_string()),
        },
        other => Some(other.to_string()),
    }
}

/// `prefix||key`, or `key` when there is no prefix.
pub fn prefixed_key(prefix: Option<&str>, key: &str) -> String {
    match prefix {
        Some(p) => format!("{p}{KEY_SEPARATOR}{key}"),
        None => key.to_string(),
    }
}

/// Removes everything up to the first `||` (how daprd strips bulk-get keys).
pub fn strip_key_prefix(key: &str) -> &str {
    key.split_once(KEY_SEPARATOR).map_or(key, |(_, k)| k)
}

/// Resolves the per-sidecar templates `{appID}`, `{namespace}` and `{uuid}` in a metadata value.
pub fn resolve_template(value: &str, app_id: &str) -> String {
    let mut out = value.replace("{appID}", app_id);
    if out.contains("{namespace}") {
        let ns = std::env::var("NAMESPACE").unwrap_or_else(|_| "default".into());
        out = out.replace("{namespace}", &format!("{ns}.{app_id}"));
    }
    while out.contains("{uuid}") {
        out = out.replacen("{uuid}", &uuid::Uuid::new_v4().to_string(), 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(prefix: Option<&str>) -> ComponentSpec {
        let spec = ComponentSpec::new("todo-state", "state.in-memory");
        match prefix {
            Some(p) => spec.with_metadata("keyPrefix", p),
            None => spec,
        }
    }

    #[test]
    fn key_prefix_strategies() {
        let k = |p| prefixed_key(key_prefix(&store(p), "task-api").as_deref(), "task:42");
        assert_eq!(k(None), "task-api||task:42");
        assert_eq!(k(Some("appid")), "task-api||task:42");
        assert_eq!(k(Some("name")), "todo-state||task:42");
        assert_eq!(k(Some("none")), "task:42");
        assert_eq!(k(Some("MyPrefix")), "myprefix||task:42");
    }

    #[test]
    fn bulk_keys_lose_everything_before_the_first_separator() {
        assert_eq!(strip_key_prefix("task-api||task:42"), "task:42");
        assert_eq!(strip_key_prefix("plain"), "plain");
    }

    #[test]
    fn query_metadata_first_value_wins_and_is_case_sensitive() {
        let pairs = vec![
            ("metadata.ttlInSeconds".to_string(), "5".to_string()),
            ("metadata.ttlInSeconds".to_string(), "9".to_string()),
            ("Metadata.x".to_string(), "no".to_string()),
            ("other".to_string(), "no".to_string()),
        ];
        let m = query_metadata(&pairs);
        assert_eq!(m.len(), 1);
        assert_eq!(m["ttlInSeconds"], "5");
    }

    #[test]
    fn templates_resolve_app_id() {
        assert_eq!(
            resolve_template("{appID}-group", "email-worker"),
            "email-worker-group"
        );
        let a = resolve_template("{uuid}", "x");
        assert_eq!(a.len(), 36);
    }
}
