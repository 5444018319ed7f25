//! `kind: Resiliency` documents, decoded by the `resiliency` crate as daprd decodes them
//! (`pkg/resiliency/resiliency.go DecodeConfiguration`).
//!
//! daprd does not refuse to start over a bad Resiliency resource: it logs the error, keeps the
//! policies decoded before the bad field and applies none of the resource's targets. The loader
//! does the same, logging the file and field at error level. Only a document without a
//! `metadata.name` is refused, like any other nameless resource.

use super::ResourceError;

/// A loaded resiliency resource.
pub type ResiliencySpec = resiliency::Resource;

pub(super) fn parse(
    file: &std::path::Path,
    value: yaml_serde::Value,
) -> Result<ResiliencySpec, ResourceError> {
    let resource = resiliency::decode::decode(file, &value).map_err(|e| ResourceError::Field {
        file: e.file,
        kind: "Resiliency".into(),
        name: e.name,
        field: e.field,
        message: e.message,
    })?;
    if let Some(e) = &resource.error {
        tracing::error!(
            file = %e.file.display(),
            resiliency = %e.name,
            field = %e.field,
            error = %e.message,
            "Resiliency resource only partly loaded: the policies before this field apply, its targets do not"
        );
    }
    Ok(resource)
}
