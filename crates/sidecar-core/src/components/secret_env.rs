//! `secretstores.local.env`: secrets are environment variables of the sidecar process.
//!
//! Secret `name` is variable `<prefix><name>` and comes back as `{name: value}`; an unset variable
//! reads as an empty string, as in daprd. `DAPR_*` variables and `APP_API_TOKEN` are never
//! exposed. Bulk reads list every allowed variable that starts with the prefix, without it.

use super::{Secret, SecretError, SecretStore};
use crate::resources::ComponentSpec;
use std::collections::BTreeMap;

/// Environment-variable secret store.
#[derive(Debug, Clone, Default)]
pub struct EnvSecretStore {
    prefix: String,
}

impl EnvSecretStore {
    /// Reads the optional `prefix` metadata.
    pub fn from_spec(spec: &ComponentSpec) -> Self {
        Self {
            prefix: spec.meta("prefix").unwrap_or_default().to_string(),
        }
    }
}

fn allowed(var: &str) -> bool {
    let upper = var.to_ascii_uppercase();
    upper != "APP_API_TOKEN" && !upper.starts_with("DAPR_")
}

impl SecretStore for EnvSecretStore {
    fn get(&self, name: &str) -> Result<Secret, SecretError> {
        let var = format!("{}{name}", self.prefix);
        let value = if allowed(&var) {
            std::env::var(&var).unwrap_or_default()
        } else {
            tracing::warn!(variable = %name, "access to this environment variable is forbidden");
            String::new()
        };
        Ok(BTreeMap::from([(name.to_string(), value)]))
    }

    fn bulk(&self) -> Result<BTreeMap<String, Secret>, SecretError> {
        let mut out = BTreeMap::new();
        for (var, value) in std::env::vars_os() {
            let (Some(var), Some(value)) = (var.to_str(), value.to_str()) else {
                continue;
            };
            let Some(name) = var.strip_prefix(&self.prefix) else {
                continue;
            };
            if name.is_empty() || !allowed(var) {
                continue;
            }
            out.insert(
                name.to_string(),
                BTreeMap::from([(name.to_string(), value.to_string())]),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dapr_variables_are_hidden() {
        assert!(!allowed("DAPR_API_TOKEN"));
        assert!(!allowed("app_api_token"));
        assert!(allowed("REDIS_PASSWORD"));
        let store = EnvSecretStore::default();
        let secret = store.get("DAPR_HTTP_PORT").unwrap();
        assert_eq!(secret.get("DAPR_HTTP_PORT").map(String::as_str), Some(""));
    }
}
