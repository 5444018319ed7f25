//! The resiliency of one sidecar: its merged policies and its breaker instances, keyed as daprd
//! keys them (`pkg/resiliency/resiliency.go`):
//!
//! * components: one breaker per component name, shared by inbound and outbound and by every
//!   operation; the first policy that asks for it fixes its settings (`circuitBreakerInstances.Get`);
//! * apps: one breaker per target app and method, at most [`APP_BREAKERS_PER_APP`] per app, the
//!   least recently used dropped first (`EndpointPolicy`, `circuitBreakerCacheSize`).
//!
//! Callers resolve a [`Runner`] once per component and direction when they start, so a call
//! itself looks nothing up; only app invocations with a breaker look up their method's breaker.

use crate::breaker::{Breaker, BreakerState};
use crate::merge::{ComponentCall, PolicySet, Selected};
use crate::policy::{BreakerPolicy, Resource};
use crate::runner::Runner;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Breakers kept per target app (daprd's default `circuitBreakerCacheSize`).
pub const APP_BREAKERS_PER_APP: usize = 100;

#[derive(Debug, Default)]
struct AppBreakers {
    tick: u64,
    by_method: HashMap<String, (Arc<Breaker>, u64)>,
}

/// Policies and breaker instances of one sidecar.
#[derive(Debug)]
pub struct Engine {
    app_id: String,
    set: PolicySet,
    components: Mutex<HashMap<String, Arc<Breaker>>>,
    apps: Mutex<HashMap<String, AppBreakers>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps: a panic elsewhere cannot leave them half-updated.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Engine {
    /// Merges the resources that apply to `app_id` (in load order).
    pub fn new<'a>(resources: impl IntoIterator<Item = &'a Resource>, app_id: &str) -> Self {
        Self {
            app_id: app_id.to_string(),
            set: PolicySet::for_app(resources, app_id),
            components: Mutex::new(HashMap::new()),
            apps: Mutex::new(HashMap::new()),
        }
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The policies selected for component `name` and `call`.
    pub fn component_policy(&self, name: &str, call: ComponentCall) -> Selected {
        self.set.component(name, call)
    }

    /// The runner of component `name` for `call`, with the component's shared breaker.
    pub fn component_runner(&self, name: &str, call: ComponentCall) -> Runner {
        let selected = self.set.component(name, call);
        let kind = match call {
            ComponentCall::StateOutbound => "statestore",
            ComponentCall::PubsubInbound | ComponentCall::PubsubOutbound => "pubsub",
        };
        let breaker = selected
            .breaker
            .map(|policy| self.component_breaker(name, kind, policy));
        Runner {
            timeout: selected.timeout,
            retry: selected.retry,
            breaker,
        }
    }

    fn component_breaker(
        &self,
        name: &str,
        kind: &str,
        policy: Arc<BreakerPolicy>,
    ) -> Arc<Breaker> {
        lock(&self.components)
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Breaker::new(policy, &self.app_id, format!("{kind}_{name}")))
            })
            .clone()
    }

    /// The policies of invocations of `app`; [`AppPolicy::runner`] gives the runner per method.
    pub fn app_policy(self: &Arc<Self>, app: &str) -> AppPolicy {
        AppPolicy {
            engine: self.clone(),
            app: app.to_string(),
            selected: self.set.app(app),
        }
    }

    fn app_breaker(&self, app: &str, method: &str, policy: &Arc<BreakerPolicy>) -> Arc<Breaker> {
        let mut apps = lock(&self.apps);
        let cache = apps.entry(app.to_string()).or_default();
        cache.tick += 1;
        let tick = cache.tick;
        if let Some((breaker, used)) = cache.by_method.get_mut(method) {
            *used = tick;
            return breaker.clone();
        }
        if cache.by_method.len() >= APP_BREAKERS_PER_APP
            && let Some(oldest) = cache
                .by_method
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(m, _)| m.clone())
        {
            cache.by_method.remove(&oldest);
        }
        let breaker = Arc::new(Breaker::new(
            policy.clone(),
            &self.app_id,
            format!("app_{app}:{method}"),
        ));
        cache
            .by_method
            .insert(method.to_string(), (breaker.clone(), tick));
        breaker
    }

    /// Every breaker of the sidecar, components first.
    pub fn breakers(&self) -> Vec<Arc<Breaker>> {
        let mut all: Vec<Arc<Breaker>> = lock(&self.components).values().cloned().collect();
        for cache in lock(&self.apps).values() {
            all.extend(cache.by_method.values().map(|(b, _)| b.clone()));
        }
        all.sort_by(|a, b| a.target().cmp(b.target()));
        all
    }

    /// The breakers in Prometheus' text format, with daprd's metric names where daprd has them
    /// (`pkg/diagnostics/resiliency_monitoring.go`): `dapr_resiliency_cb_state` (1 for the
    /// current status, 0 for the others) and `dapr_resiliency_activations_total` (state changes
    /// into each status); plus `dapr_resiliency_cb_rejected_total`, calls refused unexecuted.
    pub fn render_prometheus(&self, out: &mut String) {
        let breakers = self.breakers();
        if breakers.is_empty() {
            return;
        }
        let states = [
            BreakerState::Closed,
            BreakerState::HalfOpen,
            BreakerState::Open,
        ];
        let labels = |b: &Breaker| {
            format!(
                "app_id=\"{}\",name=\"{}\",policy=\"circuitbreaker\",breaker=\"{}\",target=\"{}\"",
                escape(&self.app_id),
                escape(&b.policy().resource),
                escape(&b.policy().name),
                escape(b.target())
            )
        };
        out.push_str("# HELP dapr_resiliency_cb_state A circuit breaker's current state: 1 on the series of its status, 0 on the others.\n# TYPE dapr_resiliency_cb_state gauge\n");
        for b in &breakers {
            let current = b.state();
            for s in states {
                let _ = writeln!(
                    out,
                    "dapr_resiliency_cb_state{{{},status=\"{}\"}} {}",
                    labels(b),
                    s.as_str(),
                    u8::from(s == current)
                );
            }
        }
        out.push_str("# HELP dapr_resiliency_activations_total Circuit breaker state changes, by the status changed to.\n# TYPE dapr_resiliency_activations_total counter\n");
        for b in &breakers {
            for s in states {
                let _ = writeln!(
                    out,
                    "dapr_resiliency_activations_total{{{},status=\"{}\"}} {}",
                    labels(b),
                    s.as_str(),
                    b.activations(s)
                );
            }
        }
        out.push_str("# HELP dapr_resiliency_cb_rejected_total Calls a circuit breaker refused without running them.\n# TYPE dapr_resiliency_cb_rejected_total counter\n");
        for b in &breakers {
            let _ = writeln!(
                out,
                "dapr_resiliency_cb_rejected_total{{{}}} {}",
                labels(b),
                b.rejected()
            );
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The policies of invocations of one target app.
#[derive(Debug, Clone)]
pub struct AppPolicy {
    engine: Arc<Engine>,
    app: String,
    selected: Selected,
}

impl AppPolicy {
    /// The runner of one invocation of `method` (its own breaker, if the policy has one).
    pub fn runner(&self, method: &str) -> Runner {
        Runner {
            timeout: self.selected.timeout,
            retry: self.selected.retry.clone(),
            breaker: self
                .selected
                .breaker
                .as_ref()
                .map(|p| self.engine.app_breaker(&self.app, method, p)),
        }
    }

    pub fn selected(&self) -> &Selected {
        &self.selected
    }
}
