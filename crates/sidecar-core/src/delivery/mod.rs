//! Subscriptions and delivery to the app.
//!
//! Startup (daprd 3.1): wait until the app port accepts a TCP connection (every 100 ms, no
//! timeout), call `GET /dapr/config` (ignored), read `GET /dapr/subscribe`, merge with the
//! declarative subscriptions scoped to this app (a programmatic subscription replaces a
//! declarative one for the same pub/sub and topic; among declaratives the first loaded wins),
//! register them with the brokers, and only then report ready on `/v1.0/healthz`.

mod deliver;
pub mod outcome;
pub mod programmatic;
pub mod retry;
pub mod routes;

use crate::components::{SubscribeRequest, Subscription};
use crate::resources::RouteRule;
use crate::sidecar::SidecarState;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Delivery workers per pub/sub and app when the component sets no `concurrency` (Redis default).
pub const DEFAULT_CONCURRENCY: usize = 10;

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
}

impl SubscriptionDef {
    /// Whether the subscriber asked for raw payloads (`metadata.rawPayload`).
    pub fn raw_payload(&self) -> bool {
        crate::metadata::get_ci(&self.metadata, "rawPayload")
            .and_then(crate::api::parse_go_bool)
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
        json!({
            "pubsubname": self.def.pubsubname,
            "topic": self.def.topic,
            "metadata": self.def.metadata,
            "rules": rules,
            "deadLetterTopic": self.def.dead_letter_topic.clone().unwrap_or_default(),
            "type": match self.def.kind {
                SubscriptionKind::Programmatic => "PROGRAMMATIC",
                SubscriptionKind::Declarative => "DECLARATIVE",
            },
        })
    }
}

/// Declarative subscriptions of `app_id`, in load order.
pub fn declarative_for(state: &SidecarState) -> Vec<SubscriptionDef> {
    state
        .runtime
        .resources()
        .subscriptions
        .iter()
        .filter(|s| s.in_scope(state.app_id()))
        .map(|s| SubscriptionDef {
            name: Some(s.name.clone()),
            pubsubname: s.pubsubname.clone(),
            topic: s.topic.clone(),
            rules: routes::resolve(&s.rules, s.default_route.as_deref(), None),
            metadata: s.metadata.clone(),
            dead_letter_topic: s.dead_letter_topic.clone(),
            kind: SubscriptionKind::Declarative,
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

async fn wait_for_app_port(state: &SidecarState, addr: &str) -> bool {
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = state.shutdown.cancelled() => return false,
        }
    }
}

/// Startup sequence of a sidecar (see the module doc).
pub(crate) async fn startup(state: Arc<SidecarState>) {
    let (Some(base), Some(port)) = (state.app_base_url(), state.opts.app_port) else {
        // No app channel: nothing to deliver to, ready at once.
        state.ready.send_replace(true);
        return;
    };
    let addr = format!("{}:{port}", state.opts.app_channel_address);
    if !wait_for_app_port(&state, &addr).await {
        return;
    }
    state.app_channel_up.store(true, Ordering::SeqCst);
    if let Ok(Some(sock)) = tokio::net::lookup_host(&addr).await.map(|mut a| a.next()) {
        state.runtime.register_app(
            state.app_id(),
            crate::runtime::AppEndpoint {
                sidecar_id: state.id,
                addr: sock,
                app_api_token: state.opts.app_api_token.clone(),
                healthy: state.app_healthy.subscribe(),
            },
        );
    }
    if let Some(health) = state.opts.app_health.clone() {
        state.tasks.spawn(crate::app_health::run_probes(
            state.clone(),
            health,
            base.clone(),
        ));
    }
    let mut config = state
        .client
        .get(format!("{base}/dapr/config"))
        .header("dapr-app-id", state.app_id())
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(5));
    if let Some(token) = &state.opts.app_api_token {
        config = config.header(crate::tokens::TOKEN_HEADER, token);
    }
    let _ = config.send().await;
    let programmatic = programmatic::fetch(&state, &base).await;
    let defs = merge(declarative_for(&state), programmatic);
    let mut semaphores: HashMap<String, Arc<tokio::sync::Semaphore>> = HashMap::new();
    for def in defs {
        if state.shutdown.is_cancelled() {
            return;
        }
        if let Some(active) = subscribe(&state, def, &mut semaphores).await {
            state
                .subscriptions
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(active);
        }
    }
    state.ready.send_replace(true);
    tracing::info!(app_id = %state.app_id(), "sidecar ready");
}

async fn subscribe(
    state: &Arc<SidecarState>,
    def: SubscriptionDef,
    semaphores: &mut HashMap<String, Arc<tokio::sync::Semaphore>>,
) -> Option<ActiveSubscription> {
    let app_id = state.app_id();
    let Some(pubsub) = state.runtime.pubsub(app_id, &def.pubsubname).cloned() else {
        tracing::warn!(%app_id, pubsub = %def.pubsubname, topic = %def.topic, "subscription to an unknown pub/sub ignored");
        return None;
    };
    if !pubsub.scopes.may_subscribe(app_id, &def.topic) {
        tracing::warn!(%app_id, pubsub = %def.pubsubname, topic = %def.topic, "subscription refused by allowedTopics/subscriptionScopes");
        return None;
    }
    for rule in &def.rules {
        if let Err(e) = routes::validate(&rule.match_expr) {
            tracing::warn!(%app_id, topic = %def.topic, error = %e, "route rule does not compile; matching it will fail deliveries");
        }
    }
    let concurrency = pubsub
        .spec
        .meta("concurrency")
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|c| *c > 0)
        .unwrap_or(DEFAULT_CONCURRENCY);
    let group = pubsub
        .spec
        .meta("consumerID")
        .filter(|c| !c.is_empty())
        .map(|c| crate::metadata::resolve_template(c, app_id))
        .unwrap_or_else(|| app_id.to_string());
    let semaphore = semaphores
        .entry(def.pubsubname.clone())
        .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(concurrency)))
        .clone();
    let policy = retry::inbound_policy(
        &state.runtime.resources().resiliencies,
        app_id,
        &def.pubsubname,
    );
    let handler = deliver::handler(
        state.clone(),
        pubsub.clone(),
        def.clone(),
        policy,
        semaphore,
    );
    let request = SubscribeRequest {
        topic: def.topic.clone(),
        consumer_group: group.clone(),
        concurrency,
    };
    match pubsub.broker.subscribe(request, handler).await {
        Ok(handle) => {
            tracing::debug!(%app_id, pubsub = %def.pubsubname, topic = %def.topic, %group, kind = ?def.kind, "subscribed");
            Some(ActiveSubscription {
                def,
                handle: Some(handle),
            })
        }
        Err(e) => {
            tracing::error!(%app_id, pubsub = %def.pubsubname, topic = %def.topic, error = %e, "subscribe failed");
            None
        }
    }
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
