//! A read-only view of one running sidecar for tools that show a run (the runner's console):
//! its app's health, its subscriptions as registered, the components it sees and its resiliency
//! policies with the live states of their circuit breakers. Taking a view locks nothing for
//! longer than a copy.

use crate::sidecar::SidecarState;
use resiliency::ComponentCall;
use std::sync::Arc;

/// Looks into one sidecar; cheap to clone, valid after the sidecar stopped (then it shows the
/// last state).
#[derive(Debug, Clone)]
pub struct SidecarInspector {
    state: Arc<SidecarState>,
}

/// One subscription as the sidecar registered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionView {
    pub pubsub: String,
    pub topic: String,
    /// `(match, path)` of each rule; the default route has an empty match.
    pub rules: Vec<(String, String)>,
    pub dead_letter_topic: Option<String>,
    pub consumer_group: String,
    /// `(maxMessagesCount, maxAwaitDurationMs)` of a bulk subscription.
    pub bulk: Option<(usize, u64)>,
}

/// One resiliency policy applied to one target, with the live state of a circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyView {
    /// The circuit breaker's policy name; for a timeout or retry, its settings in words.
    pub policy: String,
    /// What it applies to: `component:<name>:inbound|outbound`, or `app_<id>:<method>` for
    /// the breaker of an invoked app's method.
    pub target: String,
    /// `timeout`, `retry` or `circuitBreaker`.
    pub kind: &'static str,
    /// `closed`, `open` or `half-open` for a breaker (closed until its first call).
    pub breaker_state: Option<&'static str>,
}

/// What one sidecar knows now.
#[derive(Debug, Clone)]
pub struct SidecarView {
    pub app_id: String,
    /// `None` without app health checks.
    pub healthy: Option<bool>,
    pub subscriptions: Vec<SubscriptionView>,
    /// `(name, type)` of each component visible to the app.
    pub components: Vec<(String, String)>,
    /// Component policies first, then the breakers of invoked apps.
    pub policies: Vec<PolicyView>,
}

impl SidecarInspector {
    pub(crate) fn new(state: Arc<SidecarState>) -> Self {
        Self { state }
    }

    /// The sidecar's view now.
    pub fn view(&self) -> SidecarView {
        let state = &self.state;
        let app_id = state.app_id();
        let subscriptions = state
            .subscriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|s| {
                let def = &s.def;
                let consumer_group = state
                    .runtime
                    .pubsub(app_id, &def.pubsubname)
                    .map(|p| crate::delivery::consumer_group(p, app_id))
                    .unwrap_or_default();
                SubscriptionView {
                    pubsub: def.pubsubname.clone(),
                    topic: def.topic.clone(),
                    rules: def
                        .rules
                        .iter()
                        .map(|r| (r.match_expr.clone(), r.path.clone()))
                        .collect(),
                    dead_letter_topic: def.dead_letter_topic.clone(),
                    consumer_group,
                    bulk: def.bulk.map(|b| {
                        let ms = u64::try_from(b.max_await.as_millis()).unwrap_or(u64::MAX);
                        (b.max_messages, ms)
                    }),
                }
            })
            .collect();
        let components = state
            .runtime
            .components_for(app_id)
            .into_iter()
            .map(|c| (c.name.clone(), c.component_type.clone()))
            .collect();
        SidecarView {
            app_id: app_id.to_string(),
            healthy: state
                .opts
                .app_health
                .as_ref()
                .map(|_| state.app_is_healthy()),
            subscriptions,
            components,
            policies: self.policies(),
        }
    }

    fn policies(&self) -> Vec<PolicyView> {
        let state = &self.state;
        let app_id = state.app_id();
        let engine = state.policies.engine();
        let breakers = engine.breakers();
        let mut out = Vec::new();
        for spec in state.runtime.components_for(app_id) {
            let name = spec.name.as_str();
            // `kind` as `resiliency::Engine::component_runner` names a component's breaker.
            let (kind, calls): (&str, &[(ComponentCall, &str)]) =
                if state.runtime.pubsub(app_id, name).is_some() {
                    (
                        "pubsub",
                        &[
                            (ComponentCall::PubsubInbound, "inbound"),
                            (ComponentCall::PubsubOutbound, "outbound"),
                        ],
                    )
                } else if state.runtime.state_store(app_id, name).is_some() {
                    ("statestore", &[(ComponentCall::StateOutbound, "outbound")])
                } else {
                    ("", &[])
                };
            for (call, direction) in calls {
                let selected = engine.component_policy(name, *call);
                let target = format!("component:{name}:{direction}");
                if let Some(timeout) = selected.timeout {
                    out.push(PolicyView {
                        policy: format!("{timeout:?}"),
                        target: target.clone(),
                        kind: "timeout",
                        breaker_state: None,
                    });
                }
                if let Some(retry) = &selected.retry {
                    let retries = retry
                        .max_retries
                        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
                    out.push(PolicyView {
                        policy: format!("{:?} {:?}, {retries} retries", retry.kind, retry.duration),
                        target: target.clone(),
                        kind: "retry",
                        breaker_state: None,
                    });
                }
                if let Some(breaker) = &selected.breaker {
                    // One breaker per component, shared by its directions, once a call made it.
                    let key = format!("{kind}_{name}");
                    let live = breakers.iter().find(|b| b.target() == key);
                    out.push(PolicyView {
                        policy: breaker.name.clone(),
                        target,
                        kind: "circuitBreaker",
                        breaker_state: Some(live.map_or("closed", |b| b.state().as_str())),
                    });
                }
            }
        }
        // Breakers of invoked apps exist per target app and method, from the first call.
        for b in breakers.iter().filter(|b| b.target().starts_with("app_")) {
            out.push(PolicyView {
                policy: b.policy().name.clone(),
                target: b.target().to_string(),
                kind: "circuitBreaker",
                breaker_state: Some(b.state().as_str()),
            });
        }
        out
    }
}
