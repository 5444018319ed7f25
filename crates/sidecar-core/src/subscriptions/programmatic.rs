//! Programmatic subscriptions: the app's answer to `GET /dapr/subscribe`, decoded as daprd does.

use super::{SubscriptionDef, SubscriptionKind, bulk, routes};
use crate::resources::RouteRule;
use serde_json::Value;
use std::collections::BTreeMap;

/// Go's JSON decoder matches keys case-insensitively; mimic it for one object level.
fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn string_field(
    obj: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<String>, String> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("field {name}: expected a string, got {other}")),
    }
}

/// Decodes the `/dapr/subscribe` body. Any malformed element rejects the whole response, as in
/// daprd (e.g. a non-string metadata value).
pub fn parse(body: &[u8]) -> Result<Vec<SubscriptionDef>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let items: Vec<Value> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for item in items {
        let Value::Object(obj) = item else {
            return Err("subscription is not a JSON object".into());
        };
        let pubsubname = string_field(&obj, "pubsubname")?.unwrap_or_default();
        let topic = string_field(&obj, "topic")?.unwrap_or_default();
        let route = string_field(&obj, "route")?;
        let dead_letter_topic = string_field(&obj, "deadLetterTopic")?.filter(|t| !t.is_empty());
        let metadata: BTreeMap<String, String> = match field(&obj, "metadata") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(m) => {
                serde_json::from_value(m.clone()).map_err(|e| format!("field metadata: {e}"))?
            }
        };
        let (rules, default) = match field(&obj, "routes") {
            Some(Value::Object(routes)) => {
                let rules: Vec<RouteRule> = match field(routes, "rules") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(r) => serde_json::from_value(r.clone())
                        .map_err(|e| format!("field routes.rules: {e}"))?,
                };
                (rules, string_field(routes, "default")?)
            }
            _ => (Vec::new(), None),
        };
        let bulk = match field(&obj, "bulkSubscribe") {
            None => None,
            Some(b) => bulk::from_json(b)?,
        };
        let rules = routes::resolve(&rules, default.as_deref(), route.as_deref());
        if rules.is_empty() {
            tracing::warn!(%pubsubname, %topic, "programmatic subscription without a route discarded");
            continue;
        }
        out.push(SubscriptionDef {
            name: None,
            pubsubname,
            topic,
            rules,
            metadata,
            dead_letter_topic,
            kind: SubscriptionKind::Programmatic,
            bulk,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_route_routes_and_case_insensitive_keys() {
        let body = br#"[
          {"pubsubname":"p","topic":"a","route":"/a","deadLetterTopic":"dl"},
          {"pubsubName":"p","Topic":"b","route":"/old","routes":{"rules":[{"match":"event.type == \"x\"","path":"/x"}],"default":"/b"}},
          {"pubsubname":"p","topic":"c"}
        ]"#;
        let subs = parse(body).unwrap();
        assert_eq!(subs.len(), 2, "the route-less one is discarded");
        assert_eq!(subs[0].rules[0].path, "/a");
        assert_eq!(subs[0].dead_letter_topic.as_deref(), Some("dl"));
        assert_eq!(subs[1].pubsubname, "p");
        assert_eq!(subs[1].topic, "b");
        let paths: Vec<&str> = subs[1].rules.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/x", "/b"]);
        assert_eq!(subs[0].bulk, None);
    }

    #[test]
    fn bulk_subscribe_element_is_read_and_a_bad_one_rejects_everything() {
        let body = br#"[{"pubsubname":"p","topic":"a","route":"/a","bulkSubscribe":{"enabled":true,"maxMessagesCount":3,"maxAwaitDurationMs":40}}]"#;
        let bulk = parse(body).unwrap()[0].bulk.unwrap();
        assert_eq!(bulk.max_messages, 3);
        assert_eq!(bulk.max_await, std::time::Duration::from_millis(40));
        let bad = br#"[{"pubsubname":"p","topic":"a","route":"/a","bulkSubscribe":{"enabled":1}}]"#;
        assert!(parse(bad).unwrap_err().contains("bulkSubscribe.enabled"));
    }

    #[test]
    fn non_string_metadata_rejects_everything() {
        let body =
            br#"[{"pubsubname":"p","topic":"a","route":"/a","metadata":{"rawPayload":true}}]"#;
        assert!(parse(body).is_err());
        assert!(parse(b"").unwrap().is_empty());
        assert!(parse(b"[]").unwrap().is_empty());
    }
}
