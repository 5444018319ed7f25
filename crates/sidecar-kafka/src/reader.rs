//! Reading a component's metadata the way components-contrib does, with errors that name the
//! component file and the key.

use sidecar_core::go;
use sidecar_core::resources::{ComponentSpec, ResourceError};
use std::time::Duration;

/// Reads metadata of one component, with errors naming its file and key.
pub(crate) struct Reader<'a> {
    pub(crate) spec: &'a ComponentSpec,
}

impl Reader<'_> {
    pub(crate) fn error(&self, key: &str, message: impl Into<String>) -> ResourceError {
        ResourceError::Field {
            file: self.spec.source.clone(),
            kind: "Component".into(),
            name: self.spec.name.clone(),
            field: format!("spec.metadata.{key}"),
            message: message.into(),
        }
    }

    /// A non-empty value, key matched case-insensitively.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.spec.meta(key).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A non-empty value of a key the source reads with its exact spelling.
    pub(crate) fn get_exact(&self, key: &str) -> Option<&str> {
        self.spec
            .metadata
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn parse<T: std::str::FromStr>(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> Result<Option<T>, ResourceError>
    where
        T::Err: std::fmt::Display,
    {
        value
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| self.error(key, format!("{v:?} is not valid: {e}")))
            })
            .transpose()
    }

    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, ResourceError> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        go::parse_truthy(v).ok_or_else(|| self.error(key, format!("{v:?} is not a boolean")))
    }

    /// A dapr/kit duration: a Go duration, or a bare number of `bare_unit`.
    pub(crate) fn duration(
        &self,
        key: &str,
        value: Option<&str>,
        bare_unit: Duration,
    ) -> Result<Option<Duration>, ResourceError> {
        let Some(v) = value else {
            return Ok(None);
        };
        if let Ok(n) = v.parse::<u32>() {
            return Ok(Some(bare_unit * n));
        }
        go::parse_duration(v).map(Some).ok_or_else(|| {
            self.error(
                key,
                format!("{v:?} is not a duration (e.g. 500ms, 10s, or a bare number)"),
            )
        })
    }
}
