//! Resources of a multi-app run: each app's directories, combined into the one [`Resources`] that
//! the shared [`sidecar_core::Runtime`] is built from.
//!
//! With real `daprd`s every app loads its own directories, so two apps may each have a component
//! named `todo-pubsub`. Here all sidecars share one runtime, where a name means one instance (that
//! is what makes an in-memory broker connect the apps). The rule:
//!
//! 1. Every distinct directory is loaded once, in the order the apps list them.
//! 2. Each resource is scoped to the apps that list its directory (intersected with its own
//!    `scopes:`), so an app sees only what its own directories define, as with daprd.
//! 3. A component name defined in several directories is one shared instance if every definition
//!    is the same (type, version, metadata, scopes); different definitions are an error naming
//!    both files, since one name cannot be two instances in one runtime.
//!
//! Subscriptions and resiliency policies from the same file are kept once; from different files
//! they are kept apart, each scoped to its own apps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use sidecar_core::Registry;
use sidecar_core::resources::{ComponentSpec, ResourceError, Resources, load_resources};

/// The resources could not be combined.
#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    #[error("resources of app(s) {apps}: {source}")]
    Load {
        apps: String,
        #[source]
        source: Box<ResourceError>,
    },
    #[error(
        "component `{name}` is defined differently in {first} and {second}; all apps of a run share \
         one instance per component name, so the definitions must match (or rename one)"
    )]
    Conflict {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// Loads and combines the resources of `apps` (app id, resources paths); every component type
/// must be one `registry` can build.
pub fn combine(
    apps: &[(String, Vec<PathBuf>)],
    registry: &Registry,
) -> Result<Resources, CombineError> {
    // Distinct directories in first-seen order, with the apps that list each.
    let mut dirs: Vec<(PathBuf, BTreeSet<String>)> = Vec::new();
    for (app_id, paths) in apps {
        for path in paths {
            let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            match dirs.iter_mut().find(|(d, _)| *d == key) {
                Some((_, users)) => {
                    users.insert(app_id.clone());
                }
                None => dirs.push((key, BTreeSet::from([app_id.clone()]))),
            }
        }
    }

    let mut out = Resources::default();
    let mut components: BTreeMap<String, (ComponentSpec, BTreeSet<String>)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (dir, users) in &dirs {
        let loaded = load_resources(std::slice::from_ref(dir))
            .and_then(|loaded| registry.check(&loaded).map(|()| loaded))
            .map_err(|source| CombineError::Load {
                apps: users.iter().cloned().collect::<Vec<_>>().join(", "),
                source: Box::new(source),
            })?;
        for spec in loaded.components {
            match components.get_mut(&spec.name) {
                Some((first, apps)) => {
                    if !same_component(first, &spec) {
                        return Err(CombineError::Conflict {
                            name: spec.name.clone(),
                            first: first.source.clone(),
                            second: spec.source.clone(),
                        });
                    }
                    apps.extend(users.iter().cloned());
                }
                None => {
                    order.push(spec.name.clone());
                    components.insert(spec.name.clone(), (spec, users.clone()));
                }
            }
        }
        for mut sub in loaded.subscriptions {
            if let Some(existing) = out
                .subscriptions
                .iter_mut()
                .find(|s| s.source == sub.source && s.name == sub.name)
            {
                existing.scopes = union_scopes(&existing.scopes, &sub.scopes, users);
                continue;
            }
            sub.scopes = restrict(&sub.scopes, users);
            if !sub.scopes.is_empty() {
                out.subscriptions.push(sub);
            }
        }
        for mut res in loaded.resiliencies {
            if let Some(existing) = out
                .resiliencies
                .iter_mut()
                .find(|r| r.source == res.source && r.name == res.name)
            {
                existing.scopes = union_scopes(&existing.scopes, &res.scopes, users);
                continue;
            }
            res.scopes = restrict(&res.scopes, users);
            if !res.scopes.is_empty() {
                out.resiliencies.push(res);
            }
        }
    }
    for name in order {
        if let Some((mut spec, users)) = components.remove(&name) {
            spec.scopes = restrict(&spec.scopes, &users);
            // Scoped to no app at all: nobody could use it, and empty scopes would mean "everyone".
            if !spec.scopes.is_empty() {
                out.components.push(spec);
            }
        }
    }
    Ok(out)
}

fn same_component(a: &ComponentSpec, b: &ComponentSpec) -> bool {
    a.component_type == b.component_type
        && a.version == b.version
        && a.namespace == b.namespace
        && a.metadata == b.metadata
        && a.ignore_errors == b.ignore_errors
        && a.scopes.iter().collect::<BTreeSet<_>>() == b.scopes.iter().collect::<BTreeSet<_>>()
}

/// The resource's own scopes (empty = every app) narrowed to `users`.
fn restrict(own: &[String], users: &BTreeSet<String>) -> Vec<String> {
    users
        .iter()
        .filter(|u| own.is_empty() || own.contains(u))
        .cloned()
        .collect()
}

fn union_scopes(current: &[String], own: &[String], users: &BTreeSet<String>) -> Vec<String> {
    let mut all: BTreeSet<String> = current.iter().cloned().collect();
    all.extend(restrict(own, users));
    all.into_iter().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The combination with the components of the `sidecar` binary.
    fn combine(apps: &[(String, Vec<PathBuf>)]) -> Result<Resources, CombineError> {
        super::combine(apps, &crate::components())
    }

    const PUBSUB: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: todo-pubsub}\nspec: {type: pubsub.in-memory, version: v1}\n";
    const STATE: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: todo-state}\nspec: {type: state.in-memory, version: v1}\n";

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    fn scopes(r: &Resources, name: &str) -> Vec<String> {
        r.components
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .scopes
            .clone()
    }

    #[test]
    fn shared_directory_is_loaded_once_for_all_its_apps() {
        let d = dir(&[("pubsub.yaml", PUBSUB)]);
        let p = d.path().to_path_buf();
        let r = combine(&[("a".into(), vec![p.clone()]), ("b".into(), vec![p])]).unwrap();
        assert_eq!(r.components.len(), 1);
        assert_eq!(scopes(&r, "todo-pubsub"), vec!["a", "b"]);
    }

    #[test]
    fn identical_definitions_in_two_directories_are_one_instance() {
        let d1 = dir(&[("pubsub.yaml", PUBSUB), ("state.yaml", STATE)]);
        let d2 = dir(&[("pubsub.yaml", PUBSUB)]);
        let r = combine(&[
            ("a".into(), vec![d1.path().to_path_buf()]),
            ("b".into(), vec![d2.path().to_path_buf()]),
        ])
        .unwrap();
        assert_eq!(r.components.len(), 2);
        assert_eq!(scopes(&r, "todo-pubsub"), vec!["a", "b"]);
        assert_eq!(
            scopes(&r, "todo-state"),
            vec!["a"],
            "only the app listing the directory sees it"
        );
    }

    #[test]
    fn different_definitions_of_one_name_are_an_error_naming_both_files() {
        let other = PUBSUB.replace(
            "version: v1}",
            "version: v1, metadata: [{name: x, value: y}]}",
        );
        let d1 = dir(&[("pubsub.yaml", PUBSUB)]);
        let d2 = dir(&[("other.yaml", &other)]);
        let err = combine(&[
            ("a".into(), vec![d1.path().to_path_buf()]),
            ("b".into(), vec![d2.path().to_path_buf()]),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("todo-pubsub")
                && err.contains("pubsub.yaml")
                && err.contains("other.yaml"),
            "{err}"
        );
    }

    #[test]
    fn own_scopes_are_intersected() {
        let scoped = format!("{PUBSUB}scopes: [b, z]\n");
        let d = dir(&[("pubsub.yaml", &scoped)]);
        let p = d.path().to_path_buf();
        let r = combine(&[("a".into(), vec![p.clone()]), ("b".into(), vec![p])]).unwrap();
        assert_eq!(scopes(&r, "todo-pubsub"), vec!["b"]);
        let only_a = combine(&[("a".into(), vec![d.path().to_path_buf()])]).unwrap();
        assert!(only_a.components.is_empty(), "scoped to no app of the run");
    }

    #[test]
    fn load_errors_name_the_apps() {
        let d = dir(&[("bad.yaml", "kind: Component\nmetadata: [\n")]);
        let err = combine(&[("a".into(), vec![d.path().to_path_buf()])])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("app(s) a") && err.contains("bad.yaml"),
            "{err}"
        );
    }
}
