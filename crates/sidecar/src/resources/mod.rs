//! Dapr resource files: `Component`, `Subscription` (v1alpha1 and v2alpha1) and `Resiliency`.
//!
//! Every `.yaml`/`.yml` file of each resources path is read (a path may also name one file);
//! files may hold several documents separated by `---`. Kinds the sidecar does not use
//! (`Configuration`, `HTTPEndpoint`, ...) are skipped, as daprd skips what it does not load.
//! Errors name the file and the field that failed.

mod component;
mod resiliency;
mod subscription;

pub use component::{ComponentSpec, SUPPORTED_COMPONENT_TYPES};
pub use resiliency::{ResiliencySpec, RetryKind, RetryPolicySpec};
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

/// Parses a Go duration string (`300ms`, `5s`, `1m30s`, `1h`); a bare number means seconds.
pub fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs >= 0.0).then(|| std::time::Duration::from_secs_f64(secs));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * factor;
    }
    Some(std::time::Duration::from_secs_f64(total))
}
