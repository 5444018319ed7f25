//! What the deployment exposes: secrets without defaults and ports on loopback in the compose
//! stack, only the REST API behind the Ingress, and pinned images everywhere.

use yaml_serde::Value;

use crate::manifests::{COMPOSE_FILE, Manifests};
use crate::violation::{Rule, Violation};
use crate::yaml::{at, kind, seq_at, text, text_at};

/// Words that make an environment variable a secret.
const SECRET_WORDS: [&str; 5] = ["TOKEN", "SECRET", "PASSWORD", "AUTH", "KEY"];

fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// Every `${...}` interpolation in `s`: (variable, what follows the name, e.g. `:?msg`).
fn interpolations(s: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let inner = &after[..end];
        let name_len = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(inner.len());
        found.push((inner[..name_len].to_owned(), inner[name_len..].to_owned()));
        rest = &after[end + 1..];
    }
    found
}

fn strings_in<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Sequence(items) => items.iter().for_each(|v| strings_in(v, out)),
        Value::Mapping(map) => map.values().for_each(|v| strings_in(v, out)),
        _ => {}
    }
}

/// docker-compose.yml: a secret is only ever `${VAR:?message}` (no default anyone could reuse,
/// no literal), and every published port is bound to 127.0.0.1.
pub fn compose(manifests: &Manifests) -> Vec<Violation> {
    let mut found = Vec::new();
    let Some(docs) = manifests.docs(COMPOSE_FILE) else {
        return found;
    };
    for doc in docs {
        let mut strings = Vec::new();
        strings_in(doc, &mut strings);
        for s in strings {
            for (var, tail) in interpolations(s) {
                if is_secret_name(&var) && !tail.starts_with(":?") {
                    found.push(Violation::new(
                        COMPOSE_FILE,
                        Rule::ComposeSecrets,
                        format!("${{{var}{tail}}} must be required with ${{{var}:?...}}, never defaulted"),
                    ));
                }
            }
        }
        let Some(services) = doc.get("services").and_then(Value::as_mapping) else {
            continue;
        };
        for (name, service) in services {
            let name = text(name).unwrap_or_default();
            if let Some(env) = service.get("environment").and_then(Value::as_mapping) {
                for (key, value) in env {
                    let key = text(key).unwrap_or_default();
                    let required = text(value).is_some_and(|v| {
                        let vars = interpolations(&v);
                        !vars.is_empty() && vars.iter().all(|(_, tail)| tail.starts_with(":?"))
                    });
                    if is_secret_name(&key) && !required {
                        found.push(Violation::new(
                            COMPOSE_FILE,
                            Rule::ComposeSecrets,
                            format!("{name}: {key} must come from a required variable (${{VAR:?...}}), not a literal"),
                        ));
                    }
                }
            }
            for port in seq_at(service, &["ports"]) {
                let host_ip = match port {
                    Value::Mapping(_) => text_at(port, &["host_ip"]).unwrap_or_default(),
                    other => text(other)
                        .and_then(|p| p.split_once(':').map(|(ip, _)| ip.to_owned()))
                        .unwrap_or_default(),
                };
                let published = text(port).unwrap_or_else(|| format!("{port:?}"));
                // The short form `8080:8080` has a port, not an address, before the first colon.
                if host_ip != "127.0.0.1" {
                    found.push(Violation::new(
                        COMPOSE_FILE,
                        Rule::ComposePorts,
                        format!("{name}: port {published} is published on every interface; bind it to 127.0.0.1"),
                    ));
                }
            }
        }
    }
    found
}

/// An Ingress routes only the REST API: every path is `/api` or below it.
pub fn ingress_paths(manifests: &Manifests) -> Vec<Violation> {
    let mut found = Vec::new();
    for (file, doc) in manifests.all() {
        if kind(doc) != Some("Ingress") {
            continue;
        }
        for rule in seq_at(doc, &["spec", "rules"]) {
            for path in seq_at(rule, &["http", "paths"]) {
                let p = text_at(path, &["path"]).unwrap_or_default();
                if p != "/api" && !p.starts_with("/api/") {
                    found.push(Violation::new(
                        file,
                        Rule::IngressPaths,
                        format!("the Ingress routes {p:?}; only /api is public (metrics, probes and the OpenAPI document stay inside)"),
                    ));
                }
            }
        }
        if at(doc, &["spec", "defaultBackend"]).is_some() {
            found.push(Violation::new(
                file,
                Rule::IngressPaths,
                "the Ingress has a defaultBackend, which routes every path",
            ));
        }
    }
    found
}

/// Whether an image reference names a fixed version: a digest, or a tag other than `latest`.
fn pinned(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => !tag.is_empty() && tag != "latest",
        None => false,
    }
}

fn images_in<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Mapping(map) => {
            for (key, v) in map {
                if key.as_str() == Some("image")
                    && let Some(s) = v.as_str()
                {
                    out.push(s);
                }
                images_in(v, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| images_in(v, out)),
        _ => {}
    }
}

/// Every `image:` of every manifest and of docker-compose.yml names a version, and no
/// Kustomization sets the tag `latest`: a moving tag makes two pods of one Deployment run
/// different code, and a pushed `latest` reaches production unreviewed.
pub fn image_tags(manifests: &Manifests) -> Vec<Violation> {
    let mut found = Vec::new();
    for (file, doc) in manifests.all() {
        let mut images = Vec::new();
        images_in(doc, &mut images);
        for image in images {
            if !pinned(image) {
                found.push(Violation::new(
                    file,
                    Rule::ImageTags,
                    format!("image {image} is not pinned (untagged or :latest); name a version"),
                ));
            }
        }
        if kind(doc) == Some("Kustomization") {
            for image in seq_at(doc, &["images"]) {
                if text_at(image, &["newTag"]).as_deref() == Some("latest") {
                    let name = text_at(image, &["name"]).unwrap_or_default();
                    found.push(Violation::new(
                        file,
                        Rule::ImageTags,
                        format!("images: {name} gets newTag latest; name a version"),
                    ));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolations_and_pins_are_read() {
        assert_eq!(
            interpolations("a ${X:?m} b ${Y_Z:-d} ${W}"),
            [
                ("X".into(), ":?m".into()),
                ("Y_Z".into(), ":-d".into()),
                ("W".into(), String::new())
            ]
        );
        assert!(pinned("redis:7.4-alpine") && pinned("r.example.com:5000/a/b:1.0"));
        assert!(pinned("a/b@sha256:00"));
        assert!(!pinned("redis") && !pinned("r.example.com:5000/a/b") && !pinned("x:latest"));
    }
}
