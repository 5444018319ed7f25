//! `kind: Subscription` documents (`dapr.io/v2alpha1` with `routes`, `dapr.io/v1alpha1` with `route`).

use super::bulk_subscribe::{BulkSettings, BulkSubscribeSpec};
use super::{ResourceError, typed};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One routing rule: CEL `match` (empty = always) and the app path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct RouteRule {
    #[serde(default, rename = "match")]
    pub match_expr: String,
    #[serde(default)]
    pub path: String,
}

/// A declarative subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    pub name: String,
    pub pubsubname: String,
    pub topic: String,
    pub rules: Vec<RouteRule>,
    /// `routes.default` (v2alpha1) or `route` (v1alpha1).
    pub default_route: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub dead_letter_topic: Option<String>,
    /// App ids that get this subscription; empty = all.
    pub scopes: Vec<String>,
    pub source: PathBuf,
    /// `spec.bulkSubscribe` when enabled.
    pub bulk: Option<BulkSettings>,
}

impl SubscriptionSpec {
    /// Whether `app_id` gets this subscription.
    pub fn in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    #[serde(default)]
    api_version: String,
    metadata: Meta,
    spec: Spec,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    pubsubname: String,
    topic: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    routes: Option<Routes>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
    #[serde(default)]
    bulk_subscribe: Option<BulkSubscribeSpec>,
}

#[derive(Deserialize)]
struct Routes {
    #[serde(default)]
    rules: Vec<RouteRule>,
    #[serde(default)]
    default: Option<String>,
}

pub(super) fn parse(
    file: &Path,
    value: yaml_serde::Value,
) -> Result<SubscriptionSpec, ResourceError> {
    let doc: Doc = typed(file, "Subscription", value)?;
    let v1 = doc.api_version.ends_with("v1alpha1");
    let (rules, default_route) = match (v1, doc.spec.routes) {
        (true, _) | (false, None) => (Vec::new(), doc.spec.route),
        (false, Some(routes)) => (routes.rules, routes.default.or(doc.spec.route)),
    };
    let bulk = match doc.spec.bulk_subscribe.map(|b| b.settings()).transpose() {
        Ok(bulk) => bulk.flatten(),
        Err(message) => {
            return Err(ResourceError::Field {
                file: file.to_path_buf(),
                kind: "Subscription".into(),
                name: doc.metadata.name,
                field: "spec.bulkSubscribe.maxMessagesCount".into(),
                message,
            });
        }
    };
    Ok(SubscriptionSpec {
        name: doc.metadata.name,
        pubsubname: doc.spec.pubsubname,
        topic: doc.spec.topic,
        rules,
        default_route: default_route.filter(|r| !r.is_empty()),
        metadata: doc.spec.metadata,
        dead_letter_topic: doc.spec.dead_letter_topic.filter(|t| !t.is_empty()),
        scopes: doc.scopes,
        source: file.to_path_buf(),
        bulk,
    })
}
