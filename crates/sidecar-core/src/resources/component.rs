//! `kind: Component` documents.

use super::{ResourceError, typed};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A `secretKeyRef` metadata value: entry `key` of secret `name` (`key` empty = `name`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SecretKeyRef {
    pub name: String,
    #[serde(default)]
    pub key: String,
}

/// A loaded component definition.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    pub name: String,
    pub namespace: Option<String>,
    /// `<building block>.<component>`, e.g. `state.in-memory`.
    pub component_type: String,
    pub version: String,
    pub ignore_errors: bool,
    /// Metadata values as strings (templates such as `{appID}` are resolved per sidecar).
    pub metadata: BTreeMap<String, String>,
    /// App ids allowed to load the component; empty = all.
    pub scopes: Vec<String>,
    /// File the component came from.
    pub source: PathBuf,
    /// Metadata entries given as `secretKeyRef`, resolved into `metadata` when the runtime loads.
    pub secret_refs: BTreeMap<String, SecretKeyRef>,
    /// `auth.secretStore`: the secret store that resolves `secret_refs`.
    pub secret_store: Option<String>,
}

impl ComponentSpec {
    /// A component built in code (used by the test harness).
    pub fn new(name: &str, component_type: &str) -> Self {
        Self {
            name: name.to_string(),
            namespace: None,
            component_type: component_type.to_string(),
            version: "v1".to_string(),
            ignore_errors: false,
            metadata: BTreeMap::new(),
            scopes: Vec::new(),
            source: PathBuf::from("<code>"),
            secret_refs: BTreeMap::new(),
            secret_store: None,
        }
    }

    /// Adds one metadata entry.
    pub fn with_metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.insert(key.to_string(), value.to_string());
        self
    }

    /// `spec.type` building block (`state`, `pubsub`, ...).
    pub fn building_block(&self) -> &str {
        self.component_type
            .split_once('.')
            .map(|(b, _)| b)
            .unwrap_or(&self.component_type)
    }

    /// Whether `app_id` may load this component (component `scopes`).
    pub fn in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }

    /// Case-insensitive metadata lookup (daprd matches metadata keys case-insensitively).
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    metadata: Meta,
    spec: Spec,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    auth: Option<Auth>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Auth {
    #[serde(default)]
    secret_store: Option<String>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(rename = "type")]
    component_type: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    ignore_errors: bool,
    #[serde(default)]
    metadata: Option<Vec<Item>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    name: String,
    #[serde(default)]
    value: Option<yaml_serde::Value>,
    #[serde(default)]
    secret_key_ref: Option<SecretKeyRef>,
}

pub(super) fn parse(file: &Path, value: yaml_serde::Value) -> Result<ComponentSpec, ResourceError> {
    let doc: Doc = typed(file, "Component", value)?;
    let name = doc.metadata.name;
    let mut metadata = BTreeMap::new();
    let mut secret_refs = BTreeMap::new();
    for (i, item) in doc
        .spec
        .metadata
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if let Some(reference) = item.secret_key_ref {
            secret_refs.insert(item.name, reference);
            continue;
        }
        let text = match item.value {
            None | Some(yaml_serde::Value::Null) => String::new(),
            Some(yaml_serde::Value::String(s)) => s,
            Some(yaml_serde::Value::Bool(b)) => b.to_string(),
            Some(yaml_serde::Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(ResourceError::Field {
                    file: file.to_path_buf(),
                    kind: "Component".into(),
                    name,
                    field: format!("spec.metadata[{i}].value"),
                    message: "expected a string, number or boolean".into(),
                });
            }
        };
        metadata.insert(item.name, text);
    }
    Ok(ComponentSpec {
        name,
        namespace: doc.metadata.namespace,
        component_type: doc.spec.component_type,
        version: doc.spec.version.unwrap_or_else(|| "v1".into()),
        ignore_errors: doc.spec.ignore_errors,
        metadata,
        scopes: doc.scopes,
        source: file.to_path_buf(),
        secret_refs,
        secret_store: doc.auth.and_then(|a| a.secret_store),
    })
}
