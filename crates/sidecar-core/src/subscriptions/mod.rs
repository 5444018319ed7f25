//! What an app subscribes to: its declarative subscriptions (Subscription resources scoped to it)
//! and its programmatic ones (`GET /dapr/subscribe`), merged with daprd's precedence, each with
//! its routing rules resolved ([`routes`]).

/// `bulkSubscribe` settings; parsed with the resources, shared by both subscription forms.
pub use crate::resources::bulk_subscribe as bulk;
pub mod programmatic;
pub mod routes;

use crate::components::Subscription;
use crate::resources::{Resources, RouteRule};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Where a subscription came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionKind {
    Programmatic,
    Declarative,
}

/// A subscription of one app, with its resolved rules.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionDef {
    pub name: Option<String>,
    pub pubsubname: String,
    pub topic: String,
    /// Ordered rules; the last one is usually the catch-all default.
    pub rules: Vec<RouteRule>,
    pub metadata: BTreeMap<String, String>,
    pub dead_letter_topic: Option<String>,
    pub kind: SubscriptionKind,
    /// `bulkSubscribe` when enabled: messages reach the app in batches.
    pub bulk: Option<bulk::BulkSettings>,
}

impl SubscriptionDef {
    /// Whether the subscriber asked for raw payloads (`metadata.rawPayload`).
    pub fn raw_payload(&self) -> bool {
        crate::metadata::get_ci(&self.metadata, "rawPayload")
            .and_then(crate::go::parse_bool)
            .unwrap_or(false)
    }
}

/// A subscription this sidecar registered with a broker.
#[derive(Debug)]
pub struct ActiveSubscription {
    pub def: SubscriptionDef,
    handle: Option<Subscription>,
}

impl ActiveSubscription {
    /// A subscription of `def` that `handle` keeps alive.
    pub(crate) fn new(def: SubscriptionDef, handle: Subscription) -> Self {
        Self {
            def,
            handle: Some(handle),
        }
    }

    pub(crate) async fn close(self) {
        if let Some(h) = self.handle {
            h.close().await;
        }
    }

    /// Entry of `GET /v1.0/metadata`.
    pub fn describe(&self) -> Value {
        let rules: Vec<Value> = self
            .def
            .rules
            .iter()
            .map(|r| {
                if r.match_expr.is_empty() {
                    json!({"path": r.path})
                } else {
                    json!({"match": r.match_expr, "path": r.path})
                }
            })
            .collect();
        let mut sub = json!({
            "pubsubname": self.def.pubsubname,
            "topic": self.def.topic,
            "deadLetterTopic": self.def.dead_letter_topic.clone().unwrap_or_default(),
            "type": match self.def.kind {
                SubscriptionKind::Programmatic => "PROGRAMMATIC",
                SubscriptionKind::Declarative => "DECLARATIVE",
            },
        });
        // `metadata` and `rules` are `omitempty` in daprd's
        // `metadataResponsePubsubSubscription` (`pkg/api/http/metadata.go`).
        if let Some(obj) = sub.as_object_mut() {
            if !self.def.metadata.is_empty() {
                obj.insert("metadata".into(), json!(self.def.metadata));
            }
            if !rules.is_empty() {
                obj.insert("rules".into(), Value::Array(rules));
            }
        }
        sub
    }
}

/// Declarative subscriptions of `app_id`, in load order.
pub fn declarative(resources: &Resources, app_id: &str) -> Vec<SubscriptionDef> {
    resources
        .subscriptions
        .iter()
        .filter(|s| s.in_scope(app_id))
        .map(|s| SubscriptionDef {
            name: Some(s.name.clone()),
            pubsubname: s.pubsubname.clone(),
            topic: s.topic.clone(),
            rules: routes::resolve(&s.rules, s.default_route.as_deref(), None),
            metadata: s.metadata.clone(),
            dead_letter_topic: s.dead_letter_topic.clone(),
            kind: SubscriptionKind::Declarative,
            bulk: s.bulk,
        })
        .collect()
}

/// Applies daprd's precedence: one subscription per (pub/sub, topic); programmatic replaces
/// declarative; the first declarative wins over later ones.
pub fn merge(
    declarative: Vec<SubscriptionDef>,
    programmatic: Vec<SubscriptionDef>,
) -> Vec<SubscriptionDef> {
    let mut out: Vec<SubscriptionDef> = Vec::new();
    for def in declarative {
        if !out
            .iter()
            .any(|d| d.pubsubname == def.pubsubname && d.topic == def.topic)
        {
            out.push(def);
        }
    }
    for def in programmatic {
        match out
            .iter_mut()
            .find(|d| d.pubsubname == def.pubsubname && d.topic == def.topic)
        {
            Some(existing) if existing.kind == SubscriptionKind::Declarative => *existing = def,
            Some(_) => {}
            None => out.push(def),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(topic: &str, path: &str, kind: SubscriptionKind) -> SubscriptionDef {
        SubscriptionDef {
            name: None,
            pubsubname: "p".into(),
            topic: topic.into(),
            rules: vec![RouteRule {
                match_expr: String::new(),
                path: path.into(),
            }],
            metadata: BTreeMap::new(),
            dead_letter_topic: None,
            kind,
            bulk: None,
        }
    }

    #[test]
    fn programmatic_replaces_declarative_and_first_declarative_wins() {
        use SubscriptionKind::*;
        let merged = merge(
            vec![
                def("a", "/decl-a", Declarative),
                def("a", "/decl-a2", Declarative),
                def("b", "/decl-b", Declarative),
            ],
            vec![
                def("b", "/prog-b", Programmatic),
                def("c", "/prog-c", Programmatic),
            ],
        );
        let paths: Vec<&str> = merged.iter().map(|d| d.rules[0].path.as_str()).collect();
        assert_eq!(paths, ["/decl-a", "/prog-b", "/prog-c"]);
    }
}
