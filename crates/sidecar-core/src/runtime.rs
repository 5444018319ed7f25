//! The runtime: component instances shared by every sidecar of one run, and the app channels
//! service invocation reaches.

use crate::components::{PubSub, Registry, StateStore};
use crate::observe::Tap;
use crate::resources::{ComponentSpec, ResourceError, Resources};
use crate::scopes::TopicScopes;
use crate::secretstores::{SecretStoreComponent, SecretStores};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// A loaded state store.
#[derive(Debug, Clone)]
pub struct StateComponent {
    pub spec: ComponentSpec,
    pub store: Arc<dyn StateStore>,
}

/// A loaded pub/sub component.
#[derive(Debug, Clone)]
pub struct PubSubComponent {
    pub spec: ComponentSpec,
    pub broker: Arc<dyn PubSub>,
    pub scopes: TopicScopes,
}

/// An app reachable through service invocation.
#[derive(Debug, Clone)]
pub(crate) struct AppEndpoint {
    pub(crate) sidecar_id: u64,
    pub(crate) addr: SocketAddr,
    pub(crate) app_api_token: Option<String>,
    /// The app's health as its sidecar sees it (always `true` without health checks).
    pub(crate) healthy: tokio::sync::watch::Receiver<bool>,
    /// Who may invoke the app, as its sidecar's Configuration says.
    pub(crate) access_control: Option<crate::acl::AccessControl>,
}

/// Shared state of a (multi-app) run.
#[derive(Debug)]
pub struct Runtime {
    resources: Resources,
    state_stores: BTreeMap<String, StateComponent>,
    pubsubs: BTreeMap<String, PubSubComponent>,
    apps: RwLock<HashMap<String, Vec<AppEndpoint>>>,
    next_app: AtomicUsize,
    secret_stores: SecretStores,
    /// Who watches the run's publishes and deliveries (see [`crate::observe`]).
    tap: Tap,
}

impl Runtime {
    /// Instantiates every component of `resources` with the factories of `registry`.
    pub fn new(
        mut resources: Resources,
        registry: &Registry,
    ) -> Result<Arc<Runtime>, ResourceError> {
        registry.check(&resources)?;
        // Secret stores first: they resolve the secretKeyRef values of the other components.
        let secret_stores = SecretStores::load(&mut resources, registry)?;
        let mut state_stores = BTreeMap::new();
        let mut pubsubs = BTreeMap::new();
        for spec in &resources.components {
            if let Some(store) = registry.create_state_store(spec) {
                state_stores.insert(
                    spec.name.clone(),
                    StateComponent {
                        spec: spec.clone(),
                        store: store?,
                    },
                );
            } else if let Some(broker) = registry.create_pubsub(spec) {
                pubsubs.insert(
                    spec.name.clone(),
                    PubSubComponent {
                        spec: spec.clone(),
                        broker: broker?,
                        scopes: TopicScopes::from_metadata(|k| spec.meta(k).map(String::from)),
                    },
                );
            }
        }
        Ok(Arc::new(Runtime {
            resources,
            state_stores,
            pubsubs,
            apps: RwLock::new(HashMap::new()),
            next_app: AtomicUsize::new(0),
            secret_stores,
            tap: Tap::default(),
        }))
    }

    /// The observer slot of the run's publishes and deliveries.
    pub fn tap(&self) -> &Tap {
        &self.tap
    }

    /// The resources this runtime was built from.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// State store `name`, if it exists and `app_id` is in its scopes.
    pub fn state_store(&self, app_id: &str, name: &str) -> Option<&StateComponent> {
        self.state_stores
            .get(name)
            .filter(|c| c.spec.in_scope(app_id))
    }

    /// State store `name`, ignoring component scopes (for the test harness).
    pub fn state_component(&self, name: &str) -> Option<&StateComponent> {
        self.state_stores.get(name)
    }

    /// Pub/sub `name`, if it exists and `app_id` is in its scopes.
    pub fn pubsub(&self, app_id: &str, name: &str) -> Option<&PubSubComponent> {
        self.pubsubs.get(name).filter(|c| c.spec.in_scope(app_id))
    }

    /// Secret store `name`, if it exists and `app_id` is in its scopes.
    pub fn secret_store(&self, app_id: &str, name: &str) -> Option<&SecretStoreComponent> {
        self.secret_stores
            .get(name)
            .filter(|c| c.spec.in_scope(app_id))
    }

    /// Whether any secret store is visible to `app_id`.
    pub fn has_secret_stores(&self, app_id: &str) -> bool {
        self.secret_stores.iter().any(|c| c.spec.in_scope(app_id))
    }

    /// The state stores visible to `app_id`, by name.
    pub fn state_stores_for<'a>(
        &'a self,
        app_id: &'a str,
    ) -> impl Iterator<Item = &'a StateComponent> + 'a {
        self.state_stores
            .values()
            .filter(move |c| c.spec.in_scope(app_id))
    }

    /// Whether any state store is visible to `app_id`.
    pub fn has_state_stores(&self, app_id: &str) -> bool {
        self.state_stores.values().any(|c| c.spec.in_scope(app_id))
    }

    /// Components visible to `app_id`, in load order.
    pub fn components_for(&self, app_id: &str) -> Vec<&ComponentSpec> {
        self.resources
            .components
            .iter()
            .filter(|c| c.in_scope(app_id))
            .collect()
    }

    /// Capabilities of component `name`.
    pub fn capabilities(&self, name: &str) -> Vec<String> {
        if let Some(s) = self.state_stores.get(name) {
            return s.store.features();
        }
        self.pubsubs
            .get(name)
            .map(|p| p.broker.features())
            .unwrap_or_default()
    }

    pub(crate) fn register_app(&self, app_id: &str, endpoint: AppEndpoint) {
        self.apps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(app_id.to_string())
            .or_default()
            .push(endpoint);
    }

    pub(crate) fn unregister_app(&self, app_id: &str, sidecar_id: u64) {
        let mut apps = self
            .apps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(list) = apps.get_mut(app_id) {
            list.retain(|e| e.sidecar_id != sidecar_id);
            if list.is_empty() {
                apps.remove(app_id);
            }
        }
    }

    /// One app channel of `app_id`, round robin across its sidecars, as daprd's mDNS name
    /// resolution hands out an app id's addresses (components-contrib
    /// `nameresolution/mdns/mdns.go` `addressList.next`).
    pub(crate) fn resolve_app(&self, app_id: &str) -> Option<AppEndpoint> {
        let apps = self
            .apps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = apps.get(app_id)?;
        let i = self.next_app.fetch_add(1, Ordering::Relaxed) % list.len().max(1);
        list.get(i).cloned()
    }

    /// Stops every pub/sub component (subscriptions, redelivery timers and workers).
    pub async fn shutdown(&self) {
        for p in self.pubsubs.values() {
            p.broker.shutdown().await;
        }
    }
}
