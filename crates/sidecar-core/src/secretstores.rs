//! The secret stores of a runtime and the resolution of `secretKeyRef` metadata values in
//! component files.
//!
//! As in daprd, secret stores are loaded before every other component, and a component that
//! names `auth.secretStore` gets each `secretKeyRef` replaced by the value read from that store
//! at load time: secret `name`, entry `key` (or `name` when `key` is empty). Errors name the
//! component file and the metadata entry.

use crate::components::{Registry, SecretStore};
use crate::resources::{ComponentSpec, ResourceError, Resources};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A loaded secret store.
#[derive(Debug, Clone)]
pub struct SecretStoreComponent {
    pub spec: ComponentSpec,
    pub store: Arc<dyn SecretStore>,
}

/// The secret stores of a runtime, by component name.
#[derive(Debug, Clone, Default)]
pub struct SecretStores {
    stores: BTreeMap<String, SecretStoreComponent>,
}

impl SecretStores {
    /// Instantiates the secret stores of `resources`, then resolves every `secretKeyRef` of the
    /// other components in place.
    pub fn load(resources: &mut Resources, registry: &Registry) -> Result<Self, ResourceError> {
        let mut stores = BTreeMap::new();
        for spec in &resources.components {
            let Some(store) = registry.create_secret_store(spec) else {
                continue;
            };
            stores.insert(
                spec.name.clone(),
                SecretStoreComponent {
                    spec: spec.clone(),
                    store: store?,
                },
            );
        }
        let loaded = Self { stores };
        for spec in &mut resources.components {
            loaded.resolve(spec)?;
        }
        Ok(loaded)
    }

    /// Replaces the `secretKeyRef` entries of `spec` by their values.
    fn resolve(&self, spec: &mut ComponentSpec) -> Result<(), ResourceError> {
        if spec.secret_refs.is_empty() {
            return Ok(());
        }
        let field_error = |entry: &str, message: String| ResourceError::Field {
            file: spec.source.clone(),
            kind: "Component".into(),
            name: spec.name.clone(),
            field: format!("spec.metadata.{entry}.secretKeyRef"),
            message,
        };
        let mut resolved = BTreeMap::new();
        for (entry, reference) in &spec.secret_refs {
            let Some(store_name) = spec.secret_store.as_deref().filter(|s| !s.is_empty()) else {
                return Err(field_error(
                    entry,
                    "needs `auth.secretStore` naming a secret store component (the local sidecar has no implicit Kubernetes store)".into(),
                ));
            };
            let store = self.stores.get(store_name).ok_or_else(|| {
                field_error(
                    entry,
                    format!("secret store `{store_name}` (auth.secretStore) is not defined in the resources"),
                )
            })?;
            let secret = store.store.get(&reference.name).map_err(|e| {
                field_error(
                    entry,
                    format!(
                        "cannot read secret `{}` from `{store_name}`: {e}",
                        reference.name
                    ),
                )
            })?;
            let key = if reference.key.is_empty() {
                &reference.name
            } else {
                &reference.key
            };
            let value = secret.get(key).cloned().ok_or_else(|| {
                field_error(
                    entry,
                    format!(
                        "secret `{}` in `{store_name}` has no key `{key}`",
                        reference.name
                    ),
                )
            })?;
            resolved.insert(entry.clone(), value);
        }
        spec.metadata.extend(resolved);
        Ok(())
    }

    /// Whether there is no secret store at all.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// Every secret store, by component name.
    pub fn iter(&self) -> impl Iterator<Item = &SecretStoreComponent> {
        self.stores.values()
    }

    /// Secret store `name`.
    pub fn get(&self, name: &str) -> Option<&SecretStoreComponent> {
        self.stores.get(name)
    }
}
