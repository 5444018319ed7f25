//! One app's policy set: every in-scope resource merged in load order, and the selection of the
//! policies of a target (`pkg/resiliency/resiliency.go FromConfigurations`,
//! `ComponentInboundPolicy`, `ComponentOutboundPolicy`, `EndpointPolicy`, `getDefaultPolicy`).

use crate::policy::{BreakerPolicy, ComponentTarget, PolicyNames, Resource, RetryPolicy};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What a call goes through: each kind resolved to its policy, or none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selected {
    pub timeout: Option<Duration>,
    pub retry: Option<Arc<RetryPolicy>>,
    pub breaker: Option<Arc<BreakerPolicy>>,
}

impl Selected {
    pub fn is_empty(&self) -> bool {
        self.timeout.is_none() && self.retry.is_none() && self.breaker.is_none()
    }
}

/// Which kind of call a component policy is selected for; decides the `Default*` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentCall {
    PubsubInbound,
    PubsubOutbound,
    StateOutbound,
}

impl ComponentCall {
    /// Policy-name infixes tried in order before the top-level `Default<Kind>Policy`
    /// (`expandPolicyTemplate`).
    fn default_infixes(self) -> &'static [&'static str] {
        match self {
            Self::PubsubInbound => &["PubsubComponentInbound", "ComponentInbound", "Component"],
            Self::PubsubOutbound => &["PubsubComponentOutbound", "ComponentOutbound", "Component"],
            Self::StateOutbound => &[
                "StatestoreComponentOutbound",
                "ComponentOutbound",
                "Component",
            ],
        }
    }

    fn is_inbound(self) -> bool {
        self == Self::PubsubInbound
    }
}

/// The merged policies and targets of every in-scope resource.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    timeouts: BTreeMap<String, Duration>,
    retries: BTreeMap<String, Arc<RetryPolicy>>,
    breakers: BTreeMap<String, Arc<BreakerPolicy>>,
    components: BTreeMap<String, ComponentTarget>,
    apps: BTreeMap<String, PolicyNames>,
}

impl PolicySet {
    /// Merges the resources that apply to `app_id`, in load order: a later policy or target of
    /// the same name replaces the earlier one whole. Decode errors were logged when the resources
    /// were loaded; what a bad resource decoded before its error still counts.
    pub fn for_app<'a>(resources: impl IntoIterator<Item = &'a Resource>, app_id: &str) -> Self {
        let mut set = Self::default();
        for r in resources.into_iter().filter(|r| r.in_scope(app_id)) {
            set.timeouts
                .extend(r.timeouts.iter().map(|(k, v)| (k.clone(), *v)));
            set.retries.extend(
                r.retries
                    .iter()
                    .map(|(k, v)| (k.clone(), Arc::new(v.clone()))),
            );
            set.breakers.extend(
                r.breakers
                    .iter()
                    .map(|(k, v)| (k.clone(), Arc::new(v.clone()))),
            );
            set.components
                .extend(r.components.iter().map(|(k, v)| (k.clone(), v.clone())));
            set.apps
                .extend(r.apps.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        set.warn_missing_names(app_id);
        set
    }

    /// Whether no policy at all is defined (nothing can ever apply).
    pub fn is_empty(&self) -> bool {
        self.timeouts.is_empty() && self.retries.is_empty() && self.breakers.is_empty()
    }

    /// The policies of component `name` for `call`. A component named under `targets` uses only
    /// what its direction names (no defaults); any other component the `Default*` policies.
    pub fn component(&self, name: &str, call: ComponentCall) -> Selected {
        match self.components.get(name) {
            Some(target) => {
                let names = if call.is_inbound() {
                    &target.inbound
                } else {
                    &target.outbound
                };
                names.as_ref().map(|n| self.resolve(n)).unwrap_or_default()
            }
            None => self.defaults(call.default_infixes()),
        }
    }

    /// The policies of service invocations of app `app_id` (`targets.apps.<id>`, else
    /// `DefaultApp*`/`Default*`).
    pub fn app(&self, app_id: &str) -> Selected {
        match self.apps.get(app_id) {
            Some(names) => self.resolve(names),
            None => self.defaults(&["App"]),
        }
    }

    fn resolve(&self, names: &PolicyNames) -> Selected {
        Selected {
            timeout: names
                .timeout
                .as_ref()
                .and_then(|n| self.timeouts.get(n).copied())
                .filter(|t| !t.is_zero()),
            retry: names
                .retry
                .as_ref()
                .and_then(|n| self.retries.get(n).cloned()),
            breaker: names
                .circuit_breaker
                .as_ref()
                .and_then(|n| self.breakers.get(n).cloned()),
        }
    }

    fn defaults(&self, infixes: &[&str]) -> Selected {
        fn first<T: Clone>(map: &BTreeMap<String, T>, infixes: &[&str], kind: &str) -> Option<T> {
            infixes
                .iter()
                .map(|i| format!("Default{i}{kind}Policy"))
                .chain(std::iter::once(format!("Default{kind}Policy")))
                .find_map(|name| map.get(&name).cloned())
        }
        Selected {
            timeout: first(&self.timeouts, infixes, "Timeout").filter(|t| !t.is_zero()),
            retry: first(&self.retries, infixes, "Retry"),
            breaker: first(&self.breakers, infixes, "CircuitBreaker"),
        }
    }

    /// A target naming a policy that does not exist gets none of that kind (daprd would even
    /// panic on a missing component breaker); say so once, at start.
    fn warn_missing_names(&self, app_id: &str) {
        let check = |target: String, names: &PolicyNames| {
            let kinds = [
                (
                    "timeout",
                    &names.timeout,
                    self.timeouts
                        .contains_key(names.timeout.as_deref().unwrap_or_default()),
                ),
                (
                    "retry",
                    &names.retry,
                    self.retries
                        .contains_key(names.retry.as_deref().unwrap_or_default()),
                ),
                (
                    "circuitBreaker",
                    &names.circuit_breaker,
                    self.breakers
                        .contains_key(names.circuit_breaker.as_deref().unwrap_or_default()),
                ),
            ];
            for (kind, name, found) in kinds {
                if let (Some(name), false) = (name, found) {
                    tracing::error!(%app_id, field = %format!("{target}.{kind}"), policy = %name, "resiliency target names a policy that no in-scope Resiliency resource defines; that kind of policy does not apply");
                }
            }
        };
        for (name, t) in &self.components {
            for (dir, names) in [("inbound", &t.inbound), ("outbound", &t.outbound)] {
                if let Some(names) = names {
                    check(format!("spec.targets.components.{name}.{dir}"), names);
                }
            }
        }
        for (name, names) in &self.apps {
            check(format!("spec.targets.apps.{name}"), names);
        }
    }
}
