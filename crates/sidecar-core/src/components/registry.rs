//! Which component types the runtime can build, and how: every backend registers a factory under
//! its `spec.type`, as daprd's components registry does (`pkg/components/state/registry.go`,
//! `Registry.RegisterComponent` and `Registry.Create`, filled by the `init` functions of
//! `cmd/daprd/components/`). Backends outside this crate register themselves the same way, so the
//! core does not depend on them.

use super::{InMemoryPubSub, InMemoryStateStore, PubSub, StateStore};
use crate::resources::{ComponentSpec, ResourceError};
use std::sync::Arc;

/// Builds a state store from its component definition.
pub type StateStoreFactory =
    Arc<dyn Fn(&ComponentSpec) -> Result<Arc<dyn StateStore>, ResourceError> + Send + Sync>;
/// Builds a pub/sub from its component definition.
pub type PubSubFactory =
    Arc<dyn Fn(&ComponentSpec) -> Result<Arc<dyn PubSub>, ResourceError> + Send + Sync>;

/// Component factories by component type (`state.in-memory`, `pubsub.redis`, ...).
#[derive(Clone, Default)]
pub struct Registry {
    state_stores: Vec<(String, StateStoreFactory)>,
    pubsubs: Vec<(String, PubSubFactory)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("state_stores", &types(&self.state_stores))
            .field("pubsubs", &types(&self.pubsubs))
            .finish()
    }
}

impl Registry {
    /// A registry without any component type.
    pub fn new() -> Self {
        Self::default()
    }

    /// The components built into the core: `state.in-memory` and `pubsub.in-memory`.
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry
            .register_state_store("state.in-memory", |spec| {
                Ok(Arc::new(InMemoryStateStore::from_spec(spec)?))
            })
            .register_pubsub("pubsub.in-memory", |_| Ok(Arc::new(InMemoryPubSub::new())));
        registry
    }

    /// Registers (or replaces) the factory of state store type `component_type`.
    pub fn register_state_store(
        &mut self,
        component_type: &str,
        factory: impl Fn(&ComponentSpec) -> Result<Arc<dyn StateStore>, ResourceError>
        + Send
        + Sync
        + 'static,
    ) -> &mut Self {
        upsert(&mut self.state_stores, component_type, Arc::new(factory));
        self
    }

    /// Registers (or replaces) the factory of pub/sub type `component_type`.
    pub fn register_pubsub(
        &mut self,
        component_type: &str,
        factory: impl Fn(&ComponentSpec) -> Result<Arc<dyn PubSub>, ResourceError>
        + Send
        + Sync
        + 'static,
    ) -> &mut Self {
        upsert(&mut self.pubsubs, component_type, Arc::new(factory));
        self
    }

    /// The factory of state store type `component_type`.
    pub fn state_store(&self, component_type: &str) -> Option<&StateStoreFactory> {
        find(&self.state_stores, component_type)
    }

    /// The factory of pub/sub type `component_type`.
    pub fn pubsub(&self, component_type: &str) -> Option<&PubSubFactory> {
        find(&self.pubsubs, component_type)
    }
}

fn types<F>(list: &[(String, F)]) -> Vec<&str> {
    list.iter().map(|(t, _)| t.as_str()).collect()
}

fn upsert<F>(list: &mut Vec<(String, F)>, component_type: &str, factory: F) {
    match list.iter_mut().find(|(t, _)| t == component_type) {
        Some(entry) => entry.1 = factory,
        None => list.push((component_type.to_owned(), factory)),
    }
}

fn find<'a, F>(list: &'a [(String, F)], component_type: &str) -> Option<&'a F> {
    list.iter()
        .find(|(t, _)| t == component_type)
        .map(|(_, factory)| factory)
}
