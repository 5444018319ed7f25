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
/// Wraps every state store the registry builds (e.g. a test harness injecting failures).
pub type StateStoreDecorator =
    Arc<dyn Fn(&ComponentSpec, Arc<dyn StateStore>) -> Arc<dyn StateStore> + Send + Sync>;
/// Wraps every pub/sub the registry builds (e.g. a test harness recording what is published).
pub type PubSubDecorator =
    Arc<dyn Fn(&ComponentSpec, Arc<dyn PubSub>) -> Arc<dyn PubSub> + Send + Sync>;

#[derive(Clone)]
enum Factory {
    State(StateStoreFactory),
    PubSub(PubSubFactory),
    Secret(SecretStoreFactory),
}

/// Component factories by component type (`state.in-memory`, `pubsub.redis`, ...), and the
/// decorators applied to what they build.
#[derive(Clone, Default)]
pub struct Registry {
    /// In registration order, which is the order error messages list the types in.
    factories: Vec<(String, Factory)>,
    state_decorators: Vec<StateStoreDecorator>,
    pubsub_decorators: Vec<PubSubDecorator>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("types", &self.supported_types())
            .field("state_decorators", &self.state_decorators.len())
            .field("pubsub_decorators", &self.pubsub_decorators.len())
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

    /// Wraps every state store built from now on in `decorator` (after earlier decorators).
    pub fn decorate_state_stores(
        &mut self,
        decorator: impl Fn(&ComponentSpec, Arc<dyn StateStore>) -> Arc<dyn StateStore>
        + Send
        + Sync
        + 'static,
    ) -> &mut Self {
        self.state_decorators.push(Arc::new(decorator));
        self
    }

    /// Wraps every pub/sub built from now on in `decorator` (after earlier decorators).
    pub fn decorate_pubsubs(
        &mut self,
        decorator: impl Fn(&ComponentSpec, Arc<dyn PubSub>) -> Arc<dyn PubSub> + Send + Sync + 'static,
    ) -> &mut Self {
        self.pubsub_decorators.push(Arc::new(decorator));
        self
    }

    /// The state store of `spec`, decorated; `None` when its type is not a registered state store.
    pub fn create_state_store(
        &self,
        spec: &ComponentSpec,
    ) -> Option<Result<Arc<dyn StateStore>, ResourceError>> {
        let Some(Factory::State(factory)) = self.find(&spec.component_type) else {
            return None;
        };
        Some(factory(spec).map(|store| {
            self.state_decorators
                .iter()
                .fold(store, |store, decorate| decorate(spec, store))
        }))
    }

    /// The pub/sub of `spec`, decorated; `None` when its type is not a registered pub/sub.
    pub fn create_pubsub(
        &self,
        spec: &ComponentSpec,
    ) -> Option<Result<Arc<dyn PubSub>, ResourceError>> {
        let Some(Factory::PubSub(factory)) = self.find(&spec.component_type) else {
            return None;
        };
        Some(factory(spec).map(|broker| {
            self.pubsub_decorators
                .iter()
                .fold(broker, |broker, decorate| decorate(spec, broker))
        }))
    }

    /// The secret store of `spec`; `None` when its type is not a registered secret store.
    pub fn create_secret_store(
        &self,
        spec: &ComponentSpec,
    ) -> Option<Result<Arc<dyn SecretStore>, ResourceError>> {
        let Some(Factory::Secret(factory)) = self.find(&spec.component_type) else {
            return None;
        };
        Some(factory(spec))
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
