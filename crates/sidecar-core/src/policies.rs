//! The resiliency policies of one sidecar, resolved once when it starts: the outbound runner of
//! every pub/sub and state store the app can use, the inbound runner a subscription asks for,
//! and the policy of each app it invokes. The rules are the `resiliency` crate's; this module
//! only maps the runtime's components onto them.
//!
//! A component without a policy gets [`Runner::NONE`], whose calls cost nothing extra. Runners
//! of one component share its breaker (`pkg/resiliency/resiliency.go circuitBreakerInstances`),
//! so deliveries, publishes, dead-letter publishes and state calls all count on it.

use crate::components::StateError;
use crate::runtime::Runtime;
use resiliency::{AppPolicy, ComponentCall, Engine, ErrorClass, Failure, Runner};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

/// The store's own error, or a plain store error saying why the policy stopped the call.
pub fn state_error(f: Failure<StateError>) -> StateError {
    match f {
        Failure::Op(e) => e,
        other => StateError::Store(other.to_string()),
    }
}

/// Policies of one sidecar.
#[derive(Debug)]
pub struct Policies {
    engine: Arc<Engine>,
    pubsub_out: HashMap<String, Runner>,
    state_out: HashMap<String, Runner>,
    /// Invocation policies by target app, resolved on first use.
    apps: RwLock<HashMap<String, AppPolicy>>,
}

static NO_POLICY: Runner = Runner::NONE;

impl Policies {
    /// Merges the in-scope Resiliency resources of `runtime` for `app_id` and resolves the
    /// outbound runner of each of its components.
    pub fn new(runtime: &Runtime, app_id: &str) -> Self {
        let engine = Arc::new(Engine::new(&runtime.resources().resiliencies, app_id));
        let mut pubsub_out = HashMap::new();
        let mut state_out = HashMap::new();
        for spec in runtime.components_for(app_id) {
            let name = spec.name.as_str();
            if runtime.pubsub(app_id, name).is_some() {
                let runner = engine.component_runner(name, ComponentCall::PubsubOutbound);
                if !runner.is_none() {
                    pubsub_out.insert(name.to_string(), runner);
                }
            } else if runtime.state_store(app_id, name).is_some() {
                let runner = engine.component_runner(name, ComponentCall::StateOutbound);
                if !runner.is_none() {
                    state_out.insert(name.to_string(), runner);
                }
            }
        }
        Self {
            engine,
            pubsub_out,
            state_out,
            apps: RwLock::new(HashMap::new()),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Runner of publishes (and dead-letter publishes) to pub/sub `name`.
    pub fn publish(&self, name: &str) -> &Runner {
        self.pubsub_out.get(name).unwrap_or(&NO_POLICY)
    }

    /// Runner of calls to state store `name`.
    pub fn state(&self, name: &str) -> &Runner {
        self.state_out.get(name).unwrap_or(&NO_POLICY)
    }

    /// Runs one call to state store `name` under its outbound policy. daprd retries every error
    /// of get, bulk get, delete and transaction, ETag conflicts included, but never an ETag error
    /// of a save (`pkg/components/state/bulk.go PerformBulkStoreOperation`): `save` says which.
    /// [`state_error`] turns a timeout or breaker rejection into a plain store error (a 500 with
    /// its text, e.g. `circuit breaker is open`).
    pub async fn state_call<T, F, Fut>(
        &self,
        name: &str,
        save: bool,
        op: F,
    ) -> Result<T, Failure<StateError>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StateError>>,
    {
        let classify = |e: &StateError| match e {
            StateError::EtagMismatch(_) | StateError::EtagInvalid(_) if save => {
                ErrorClass::Permanent
            }
            _ => ErrorClass::Retriable,
        };
        self.state(name).run(op, classify, None).await
    }

    /// Runner of deliveries from pub/sub `name` (resolved once per subscription).
    pub fn delivery(&self, name: &str) -> Runner {
        self.engine
            .component_runner(name, ComponentCall::PubsubInbound)
    }

    /// Runner of one invocation of `method` on app `app`.
    pub fn invoke(&self, app: &str, method: &str) -> Runner {
        let known = self
            .apps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(app)
            .map(|p| p.runner(method));
        if let Some(runner) = known {
            return runner;
        }
        let policy = self.engine.app_policy(app);
        let runner = policy.runner(method);
        self.apps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(app.to_string(), policy);
        runner
    }

    /// The breakers in Prometheus' text format (empty without breakers).
    pub fn render_metrics(&self, out: &mut String) {
        self.engine.render_prometheus(out);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::components::Registry;
    use crate::resources::Resources;
    use std::path::Path;
    use std::time::Duration;

    const YAML: &str = r#"
kind: Component
metadata: { name: todo-pubsub }
spec: { type: pubsub.in-memory, version: v1 }
---
kind: Component
metadata: { name: other-pubsub }
spec: { type: pubsub.in-memory, version: v1 }
---
kind: Component
metadata: { name: todo-state }
spec: { type: state.in-memory, version: v1 }
---
kind: Resiliency
metadata: { name: r }
scopes: [email-worker]
spec:
  policies:
    timeouts: { short: 250ms }
    retries:
      fast: { policy: constant, duration: 10ms, maxRetries: 2 }
      DefaultRetryPolicy: { policy: constant, duration: 1s, maxRetries: 1 }
    circuitBreakers:
      cb: { trip: "consecutiveFailures >= 1", timeout: 1h }
  targets:
    components:
      todo-pubsub: { inbound: { retry: fast, timeout: short } }
      todo-state: { outbound: { retry: fast, circuitBreaker: cb } }
"#;

    fn policies(app_id: &str) -> Policies {
        let resources = Resources::from_yaml(Path::new("r.yaml"), YAML).unwrap();
        let runtime = Runtime::new(resources, &Registry::with_builtins()).unwrap();
        Policies::new(&runtime, app_id)
    }

    #[test]
    fn a_targeted_component_uses_its_policies_and_others_the_defaults() {
        let p = policies("email-worker");
        let inbound = p.delivery("todo-pubsub");
        assert_eq!(inbound.retry.unwrap().max_retries, Some(2));
        assert_eq!(inbound.timeout, Some(Duration::from_millis(250)));
        let other = p.delivery("other-pubsub");
        assert_eq!(other.retry.unwrap().duration, Duration::from_secs(1));
        assert!(
            p.publish("todo-pubsub").is_none(),
            "targeted: no default for outbound"
        );
        assert_eq!(
            p.publish("other-pubsub")
                .retry
                .as_ref()
                .unwrap()
                .max_retries,
            Some(1)
        );
    }

    #[test]
    fn resources_scoped_to_other_apps_give_no_policy() {
        let p = policies("task-api");
        assert!(p.delivery("todo-pubsub").is_none());
        assert!(p.state("todo-state").is_none());
        assert!(p.invoke("audit-logger", "audit").is_none());
    }

    #[tokio::test]
    async fn save_etag_errors_are_not_retried_but_delete_ones_are() {
        let p = policies("email-worker");
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let conflict = || {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Err::<(), _>(StateError::EtagMismatch("x".into())) }
        };
        let saved = p.state_call("todo-state", true, conflict).await;
        assert!(matches!(
            saved,
            Err(Failure::Op(StateError::EtagMismatch(_)))
        ));
        assert_eq!(attempts.load(std::sync::atomic::Ordering::Relaxed), 1);
        // The save's failure opened the breaker (`>= 1`): the delete is refused unexecuted.
        let deleted = p.state_call("todo-state", false, conflict).await;
        assert_eq!(
            state_error(deleted.unwrap_err()).to_string(),
            "circuit breaker is open"
        );
        assert_eq!(attempts.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn without_a_policy_a_state_call_is_one_attempt() {
        let p = policies("task-api");
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let result = p
            .state_call("todo-state", false, || {
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async { Err::<(), _>(StateError::Store("down".into())) }
            })
            .await;
        assert!(matches!(result, Err(Failure::Op(StateError::Store(_)))));
        assert_eq!(attempts.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
