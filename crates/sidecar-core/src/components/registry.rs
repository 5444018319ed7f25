//! Which component types the runtime can build, and how: every backend registers a factory under
//! its `spec.type`, as daprd's components registry does (`pkg/components/state/registry.go`,
//! `Registry.RegisterComponent` and `Registry.Create`, filled by the `init` functions of
//! `cmd/daprd/components/`). Backends outside this crate register themselves the same way, so the
//! core does not depend on them.

use super::{
    EnvSecretStore, FileSecretStore, InMemoryPubSub, InMemoryStateStore, PubSub, SecretStore,
    StateStore,
};
use crate::resources::{ComponentSpec, ResourceError, Resources};
use std::sync::Arc;

/// Builds a state store from its component definition.
pub type StateStoreFactory =
    Arc<dyn Fn(&ComponentSpec) -> Result<Arc<dyn StateStore>, ResourceError> + Send + Sync>;
/// Builds a pub/sub from its component definition.
pub type PubSubFactory =
    Arc<dyn Fn(&ComponentSpec) -> Result<Arc<dyn PubSub>, ResourceError> + Send + Sync>;
/// Builds a secret store from its component definition.
pub type SecretStoreFactory =
    Arc<dyn Fn(&ComponentSpec) -> Result<Arc<dyn SecretStore>, ResourceError> + Send + Sync>;

#[derive(Clone)]
enum Factory {
    State(StateStoreFactory),
    PubSub(PubSubFactory),
    Secret(SecretStoreFactory),
}

/// Component factories by component type (`state.in-memory`, `pubsub.redis`, ...).
#[derive(Clone, Default)]
pub struct Registry {
    /// In registration order, which is the order error messages list the types in.
    factories: Vec<(String, Factory)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("types", &self.supported_types())
            .finish()
    }
}

impl Registry {
    /// A registry without any component type.
    pub fn new() -> Self {
        Self::default()
    }

    /// The components built into the core: `state.in-memory`, `pubsub.in-memory`,
    /// `secretstores.local.env` and `secretstores.local.file`.
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry
            .register_state_store("state.in-memory", |spec| {
                Ok(Arc::new(InMemoryStateStore::from_spec(spec)?))
            })
            .register_pubsub("pubsub.in-memory", |_| Ok(Arc::new(InMemoryPubSub::new())))
            .register_secret_store("secretstores.local.env", |spec| {
                Ok(Arc::new(EnvSecretStore::from_spec(spec)))
            })
            .register_secret_store("secretstores.local.file", |spec| {
                Ok(Arc::new(FileSecretStore::from_spec(spec)?))
            });
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
        self.upsert(component_type, Factory::State(Arc::new(factory)))
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
        self.upsert(component_type, Factory::PubSub(Arc::new(factory)))
    }

    /// Registers (or replaces) the factory of secret store type `component_type`.
    pub fn register_secret_store(
        &mut self,
        component_type: &str,
        factory: impl Fn(&ComponentSpec) -> Result<Arc<dyn SecretStore>, ResourceError>
        + Send
        + Sync
        + 'static,
    ) -> &mut Self {
        self.upsert(component_type, Factory::Secret(Arc::new(factory)))
    }

    /// The factory of state store type `component_type`.
    pub fn state_store(&self, component_type: &str) -> Option<&StateStoreFactory> {
        match self.find(component_type)? {
            Factory::State(f) => Some(f),
            _ => None,
        }
    }

    /// The factory of pub/sub type `component_type`.
    pub fn pubsub(&self, component_type: &str) -> Option<&PubSubFactory> {
        match self.find(component_type)? {
            Factory::PubSub(f) => Some(f),
            _ => None,
        }
    }

    /// The factory of secret store type `component_type`.
    pub fn secret_store(&self, component_type: &str) -> Option<&SecretStoreFactory> {
        match self.find(component_type)? {
            Factory::Secret(f) => Some(f),
            _ => None,
        }
    }

    /// Every registered type: state stores and pub/subs in registration order, then secret
    /// stores.
    pub fn supported_types(&self) -> Vec<&str> {
        let (secrets, others): (Vec<_>, Vec<_>) = self
            .factories
            .iter()
            .partition(|(_, f)| matches!(f, Factory::Secret(_)));
        others
            .into_iter()
            .chain(secrets)
            .map(|(t, _)| t.as_str())
            .collect()
    }

    /// Fails on the first component of `resources` whose type is not registered, naming its file
    /// and the supported types.
    pub fn check(&self, resources: &Resources) -> Result<(), ResourceError> {
        match resources
            .components
            .iter()
            .find(|spec| self.find(&spec.component_type).is_none())
        {
            None => Ok(()),
            Some(spec) => Err(ResourceError::UnknownComponentType {
                file: spec.source.clone(),
                name: spec.name.clone(),
                component_type: spec.component_type.clone(),
                supported: self.supported_types().join(", "),
            }),
        }
    }

    fn upsert(&mut self, component_type: &str, factory: Factory) -> &mut Self {
        match self.factories.iter_mut().find(|(t, _)| t == component_type) {
            Some(entry) => entry.1 = factory,
            None => self.factories.push((component_type.to_owned(), factory)),
        }
        self
    }

    fn find(&self, component_type: &str) -> Option<&Factory> {
        self.factories
            .iter()
            .find(|(t, _)| t == component_type)
            .map(|(_, factory)| factory)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn unknown_component_type_names_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(
            &file,
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: bus}\nspec: {type: pubsub.redpanda, version: v1}\n",
        )
        .unwrap();
        let resources = crate::load_resources(std::slice::from_ref(&file)).unwrap();
        let err = Registry::with_builtins()
            .check(&resources)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.yaml")
                && err.contains("spec.type")
                && err.contains("pubsub.redpanda"),
            "{err}"
        );
    }
}
