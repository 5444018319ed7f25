//! Secret stores (`secretstores.local.env`, `secretstores.local.file`) and the resolution of
//! `secretKeyRef` metadata values in component files.
//!
//! As in daprd, secret stores are loaded before every other component, and a component that
//! names `auth.secretStore` gets each `secretKeyRef` replaced by the value read from that store
//! at load time: secret `name`, entry `key` (or `name` when `key` is empty). Errors name the
//! component file and the metadata entry.

mod env;
mod file;

pub use env::EnvSecretStore;
pub use file::FileSecretStore;

use crate::resources::{ComponentSpec, ResourceError, Resources};
use crate::runtime::Runtime;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Component types of secret stores this sidecar can load.
pub const SECRET_STORE_TYPES: &[&str] = &["secretstores.local.env", "secretstores.local.file"];

/// One secret: entry name to value.
pub type Secret = BTreeMap<String, String>;

/// A secret store failure (500 `ERR_SECRET_GET` on the API).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

/// A secret store component.
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    /// The secret `name`.
    fn get(&self, name: &str) -> Result<Secret, SecretError>;
    /// Every secret of the store.
    fn bulk(&self) -> Result<BTreeMap<String, Secret>, SecretError>;
}

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
    pub fn load(resources: &mut Resources) -> Result<Self, ResourceError> {
        let mut stores = BTreeMap::new();
        for spec in resources
            .components
            .iter()
            .filter(|c| c.building_block() == "secretstores")
        {
            let store: Arc<dyn SecretStore> = match spec.component_type.as_str() {
                "secretstores.local.env" => Arc::new(EnvSecretStore::from_spec(spec)),
                "secretstores.local.file" => Arc::new(FileSecretStore::from_spec(spec)?),
                other => {
                    return Err(ResourceError::UnknownComponentType {
                        file: spec.source.clone(),
                        name: spec.name.clone(),
                        component_type: other.to_string(),
                        supported: SECRET_STORE_TYPES.join(", "),
                    });
                }
            };
            stores.insert(
                spec.name.clone(),
                SecretStoreComponent {
                    spec: spec.clone(),
                    store,
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

    /// Whether the runtime has any secret store.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// Secret store `name`.
    pub fn get(&self, name: &str) -> Option<&SecretStoreComponent> {
        self.stores.get(name)
    }
}

impl Runtime {
    /// Secret store `name`, if it exists and `app_id` is in its scopes.
    pub fn secret_store(&self, app_id: &str, name: &str) -> Option<&SecretStoreComponent> {
        self.secret_stores
            .get(name)
            .filter(|c| c.spec.in_scope(app_id))
    }

    /// Whether any secret store is visible to `app_id`.
    pub fn has_secret_stores(&self, app_id: &str) -> bool {
        self.secret_stores
            .stores
            .values()
            .any(|c| c.spec.in_scope(app_id))
    }
}
