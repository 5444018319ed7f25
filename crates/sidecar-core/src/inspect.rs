//! A read-only view of one running sidecar for tools that show a run (the runner's console):
//! its app's health, its subscriptions as registered, the components it sees and the live
//! states of its circuit breakers. Taking a view locks nothing for longer than a copy.

use crate::sidecar::SidecarState;
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

/// One circuit breaker and its state now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerView {
    /// The `circuitBreakers` policy name.
    pub policy: String,
    /// What it guards (`app:<id>`, `component:<name>:<direction>` ...).
    pub target: String,
    /// `closed`, `open` or `half-open`.
    pub state: &'static str,
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
    pub breakers: Vec<BreakerView>,
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
        let breakers = state
            .policies
            .engine()
            .breakers()
            .iter()
            .map(|b| BreakerView {
                policy: b.policy().name.clone(),
                target: b.target().to_string(),
                state: b.state().as_str(),
            })
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
            breakers,
        }
    }
}
