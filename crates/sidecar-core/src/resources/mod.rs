//! Dapr resource files: `Component`, `Subscription` (v1alpha1 and v2alpha1) and `Resiliency`.
//!
//! Every `.yaml`/`.yml` file of each resources path is read (a path may also name one file);
//! files may hold several documents separated by `---`. Kinds the sidecar does not use
//! (`Configuration`, `HTTPEndpoint`, ...) are skipped, as daprd skips what it does not load.
//! Errors name the file and the field that failed. Whether a component type can be built is the
//! component [`Registry`](crate::components::Registry)'s call, not the loader's.

pub mod bulk_subscribe;
mod component;
mod resiliency;
mod subscription;

pub use component::{ComponentSpec, SecretKeyRef};
pub use resiliency::ResiliencySpec;
pub use subscription::{RouteRule, SubscriptionSpec};

use std::path::{Path, PathBuf};

/// Everything loaded from the resources paths, in load order.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub components: Vec<ComponentSpec>,
    pub subscriptions: Vec<SubscriptionSpec>,
    pub resiliencies: Vec<ResiliencySpec>,
}

/// A resource that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("cannot read resources path {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: invalid YAML: {message}")]
    Yaml { file: PathBuf, message: String },
    #[error("{file}: {kind} `{name}`: field `{field}`: {message}")]
    Field {
        file: PathBuf,
        kind: String,
        name: String,
        field: String,
        message: String,
    },
    #[error(
        "{file}: component `{name}`: field `spec.type`: unknown component type `{component_type}` (supported: {supported})"
    )]
    UnknownComponentType {
        file: PathBuf,
        name: String,
        component_type: String,
        supported: String,
    },
    #[error("{file}: component `{name}` is defined twice (first in {first})")]
    DuplicateComponent {
        file: PathBuf,
        name: String,
        first: PathBuf,
    },
}

/// Loads every Dapr resource found under `paths` (directories are read non-recursively, in file
/// name order, like daprd's resources loader).
pub fn load_resources(paths: &[PathBuf]) -> Result<Resources, ResourceError> {
    let mut resources = Resources::default();
    for path in paths {
        for file in resource_files(path)? {
            let text = std::fs::read_to_string(&file).map_err(|source| ResourceError::Io {
                path: file.clone(),
                source,
            })?;
            parse_into(&mut resources, &file, &text)?;
        }
    }
    Ok(resources)
}

impl Resources {
    /// Parses resources from YAML text; `origin` names the text in errors.
    pub fn from_yaml(origin: &Path, text: &str) -> Result<Self, ResourceError> {
        let mut resources = Resources::default();
        parse_into(&mut resources, origin, text)?;
        Ok(resources)
    }

    /// Appends `other` after `self` (later loads lose ties, as in daprd).
    pub fn merge(&mut self, other: Resources) {
        self.components.extend(other.components);
        self.subscriptions.extend(other.subscriptions);
        self.resiliencies.extend(other.resiliencies);
    }
}

fn resource_files(path: &Path) -> Result<Vec<PathBuf>, ResourceError> {
    let io = |source| ResourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let p = entry.path();
        let is_yaml = matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        );
        if is_yaml && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

fn parse_into(resources: &mut Resources, file: &Path, text: &str) -> Result<(), ResourceError> {
    for document in yaml_serde::Deserializer::from_str(text) {
        let value =
            <yaml_serde::Value as serde::Deserialize>::deserialize(document).map_err(|e| {
                ResourceError::Yaml {
                    file: file.to_path_buf(),
                    message: e.to_string(),
                }
            })?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_string();
        match kind.as_str() {
            "Component" => {
                let component = component::parse(file, value)?;
                if let Some(first) = resources
                    .components
                    .iter()
                    .find(|c| c.name == component.name)
                {
                    return Err(ResourceError::DuplicateComponent {
                        file: file.to_path_buf(),
                        name: component.name,
                        first: first.source.clone(),
                    });
                }
                resources.components.push(component);
            }
            "Subscription" => resources
                .subscriptions
                .push(subscription::parse(file, value)?),
            "Resiliency" => resources.resiliencies.push(resiliency::parse(file, value)?),
            other => {
                tracing::debug!(file = %file.display(), kind = other, "skipping resource kind the sidecar does not use");
            }
        }
    }
    Ok(())
}

/// Deserialises `value` into `T`, turning a failure into an error naming the field path.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    file: &Path,
    kind: &str,
    value: yaml_serde::Value,
) -> Result<T, ResourceError> {
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("<unnamed>")
        .to_string();
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        ResourceError::Field {
            file: file.to_path_buf(),
            kind: kind.to_string(),
            name,
            field,
            message: e.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const GOOD: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: { name: todo-state }
spec:
  type: state.in-memory
  version: v1
  metadata:
    - { name: keyPrefix, value: name }
    - { name: ttlInSeconds, value: 30 }
scopes: [task-api]
---
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: { name: ignored }
spec: {}
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: { name: s2 }
spec:
  pubsubname: todo-pubsub
  topic: task-created
  routes:
    rules: [ { match: 'event.type == "x"', path: /x } ]
    default: /events/task-created
  deadLetterTopic: email-worker-dead-letters
scopes: [email-worker]
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata: { name: s1 }
spec: { pubsubname: todo-pubsub, topic: task-updated, route: /events/task-updated }
"#;

    #[test]
    fn loads_multi_document_files_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
        let res = load_resources(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(res.components.len(), 1);
        let c = &res.components[0];
        assert_eq!(c.meta("KEYPREFIX"), Some("name"));
        assert_eq!(c.meta("ttlInSeconds"), Some("30"));
        assert!(c.in_scope("task-api") && !c.in_scope("audit-logger"));
        assert_eq!(res.subscriptions.len(), 2);
        let s2 = &res.subscriptions[0];
        assert_eq!(s2.rules[0].path, "/x");
        assert_eq!(s2.default_route.as_deref(), Some("/events/task-created"));
        assert!(s2.in_scope("email-worker") && !s2.in_scope("task-api"));
        assert_eq!(
            res.subscriptions[1].default_route.as_deref(),
            Some("/events/task-updated")
        );
    }

    #[test]
    fn schema_errors_name_the_field_path() {
        let yaml = "kind: Component\nmetadata: {name: x}\nspec: {version: v1}\n";
        let err = Resources::from_yaml(Path::new("c.yaml"), yaml)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.yaml") && err.contains("spec") && err.contains("type"),
            "{err}"
        );
        // A bad Resiliency field is logged, not fatal (daprd's `DecodeConfiguration`): the
        // resource loads with the error recorded, its earlier policies kept, its targets dropped.
        let yaml = "kind: Resiliency\nmetadata: {name: r}\nspec:\n  policies: {timeouts: {t: 1s}, retries: {a: {duration: soon}}}\n  targets: {components: {p: {inbound: {timeout: t}}}}\n";
        let res = Resources::from_yaml(Path::new("r.yaml"), yaml).unwrap();
        let r = &res.resiliencies[0];
        let err = r.error.as_ref().unwrap().to_string();
        assert!(
            err.contains("r.yaml") && err.contains("spec.policies.retries.a.duration"),
            "{err}"
        );
        assert!(r.timeouts.contains_key("t") && r.components.is_empty());
        let yaml = "kind: Resiliency\nspec:\n  policies: {}\n";
        let err = Resources::from_yaml(Path::new("r.yaml"), yaml)
            .unwrap_err()
            .to_string();
        assert!(err.contains("metadata.name"), "{err}");
        let err = load_resources(&[PathBuf::from("/definitely/not/here")]).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"));
    }

    #[test]
    fn a_bulk_subscription_batching_more_than_the_limit_is_refused_with_its_field_named() {
        let yaml = |count: i64| {
            format!(
                "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {{name: audit}}\n\
                 spec:\n  pubsubname: p\n  topic: t\n  routes: {{default: /t}}\n  \
                 bulkSubscribe: {{enabled: true, maxMessagesCount: {count}}}\n"
            )
        };
        let err = Resources::from_yaml(Path::new("s.yaml"), &yaml(2_147_483_647))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s.yaml")
                && err.contains("`audit`")
                && err.contains("spec.bulkSubscribe.maxMessagesCount")
                && err.contains("2147483647"),
            "{err}"
        );
        let ok = Resources::from_yaml(Path::new("s.yaml"), &yaml(500)).unwrap();
        assert_eq!(ok.subscriptions[0].bulk.map(|b| b.max_messages), Some(500));
    }

    #[test]
    fn duplicate_components_are_rejected() {
        let one =
            "kind: Component\nmetadata: {name: x}\nspec: {type: state.in-memory, version: v1}\n";
        let text = format!("{one}---\n{one}");
        assert!(Resources::from_yaml(Path::new("d.yaml"), &text).is_err());
    }
}
