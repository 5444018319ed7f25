//! `secretstores.local.file`: secrets from a JSON file read at load time.
//!
//! Without `multiValued`, nested objects and arrays are flattened into one secret per leaf, named
//! by joining the path with `nestedSeparator` (default `:`), e.g. `{"redis":{"password":"x"}}`
//! gives secret `redis:password`. Reading secret `n` returns `{n: value}`.
//! With `multiValued: true`, each top-level object is one secret whose entries are its (flattened)
//! leaves, and a top-level string is a secret with a single entry.
//! A relative `secretsFile` is resolved against the working directory, like daprd.

use super::{Secret, SecretError, SecretStore};
use crate::resources::{ComponentSpec, ResourceError};
use serde_json::Value;
use std::collections::BTreeMap;

/// JSON-file secret store.
#[derive(Debug, Clone, Default)]
pub struct FileSecretStore {
    secrets: BTreeMap<String, Secret>,
}

impl FileSecretStore {
    /// Reads `secretsFile` and flattens it according to the metadata.
    pub fn from_spec(spec: &ComponentSpec) -> Result<Self, ResourceError> {
        let error = |field: &str, message: String| ResourceError::Field {
            file: spec.source.clone(),
            kind: "Component".into(),
            name: spec.name.clone(),
            field: format!("spec.metadata.{field}"),
            message,
        };
        let path = spec
            .meta("secretsFile")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| error("secretsFile", "required (path of a JSON file)".into()))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| error("secretsFile", format!("cannot read {path}: {e}")))?;
        let json: serde_json::Map<String, Value> = serde_json::from_str(&text)
            .map_err(|e| error("secretsFile", format!("{path} is not a JSON object: {e}")))?;
        let separator = spec
            .meta("nestedSeparator")
            .filter(|s| !s.is_empty())
            .unwrap_or(":");
        let multi_valued = match spec.meta("multiValued").map(str::trim) {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(error("multiValued", format!("{other:?} is not a boolean")));
            }
        };
        let mut secrets = BTreeMap::new();
        if multi_valued {
            for (name, value) in json {
                let mut entries = BTreeMap::new();
                match value {
                    Value::Object(obj) => {
                        flatten(&mut entries, None, &Value::Object(obj), separator)
                    }
                    other => {
                        entries.insert(name.clone(), leaf(&other));
                    }
                }
                secrets.insert(name, entries);
            }
        } else {
            let mut flat = BTreeMap::new();
            flatten(&mut flat, None, &Value::Object(json), separator);
            for (name, value) in flat {
                secrets.insert(name.clone(), BTreeMap::from([(name, value)]));
            }
        }
        Ok(Self { secrets })
    }
}

fn leaf(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn flatten(out: &mut BTreeMap<String, String>, path: Option<&str>, v: &Value, sep: &str) {
    let join = |k: &str| match path {
        Some(p) => format!("{p}{sep}{k}"),
        None => k.to_string(),
    };
    match v {
        Value::Object(obj) => {
            for (k, child) in obj {
                flatten(out, Some(&join(k)), child, sep);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                flatten(out, Some(&join(&i.to_string())), child, sep);
            }
        }
        other => {
            out.insert(path.unwrap_or_default().to_string(), leaf(other));
        }
    }
}

impl SecretStore for FileSecretStore {
    fn get(&self, name: &str) -> Result<Secret, SecretError> {
        self.secrets
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError(format!("secret {name} not found")))
    }

    fn bulk(&self) -> Result<BTreeMap<String, Secret>, SecretError> {
        Ok(self.secrets.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn store(json: &str, extra: &[(&str, &str)]) -> FileSecretStore {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        std::fs::write(&path, json).unwrap();
        let spec = extra.iter().fold(
            ComponentSpec::new("s", "secretstores.local.file")
                .with_metadata("secretsFile", path.to_str().unwrap()),
            |s, (k, v)| s.with_metadata(k, v),
        );
        FileSecretStore::from_spec(&spec).unwrap()
    }

    #[test]
    fn nested_values_are_flattened() {
        let s = store(
            r#"{"redis":{"password":"pw","ports":[1,2]},"plain":"v"}"#,
            &[],
        );
        assert_eq!(s.get("redis:password").unwrap()["redis:password"], "pw");
        assert_eq!(s.get("redis:ports:1").unwrap()["redis:ports:1"], "2");
        assert_eq!(s.get("plain").unwrap()["plain"], "v");
        assert!(s.get("redis").is_err());
    }

    #[test]
    fn custom_separator_and_multi_valued() {
        let s = store(r#"{"a":{"b":"c"}}"#, &[("nestedSeparator", ".")]);
        assert!(s.get("a.b").is_ok());
        let m = store(
            r#"{"db":{"user":"u","pass":"p"},"one":"x"}"#,
            &[("multiValued", "true")],
        );
        let db = m.get("db").unwrap();
        assert_eq!((db["user"].as_str(), db["pass"].as_str()), ("u", "p"));
        assert_eq!(m.get("one").unwrap()["one"], "x");
    }
}
