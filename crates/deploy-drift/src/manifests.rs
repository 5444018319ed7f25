//! Reading the repository's manifests: raw text first ([`Sources`], which tests edit), then
//! parsed multi-document YAML ([`Manifests`], which the rules read).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use yaml_serde::Value;

use crate::violation::{Rule, Violation};

/// The run files at the repository root that the checks read.
pub const RUN_FILES: [&str; 3] = ["dapr.yaml", "dapr.redis.yaml", "dapr.kafka.yaml"];
/// The compose stack at the repository root.
pub const COMPOSE_FILE: &str = "docker-compose.yml";

/// Reading the repository failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// File texts by path relative to the repository root (`/` separators).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub files: BTreeMap<String, String>,
    /// Files that are symbolic links to another file of the sources: link path to target path.
    /// A link reads as its target's current text, so an edit of the target shows in both.
    pub links: BTreeMap<String, String>,
}

impl Sources {
    /// Every `.yaml`/`.yml` file under `deploy/`, plus the run files and the compose file.
    pub fn load(root: &Path) -> Result<Self, LoadError> {
        let mut sources = Self::default();
        collect(root, &root.join("deploy"), &mut sources)?;
        for name in RUN_FILES.into_iter().chain([COMPOSE_FILE]) {
            let path = root.join(name);
            if path.is_file() {
                sources.files.insert(name.to_owned(), read(&path)?);
            }
        }
        Ok(sources)
    }

    /// The text of `path`, following a link to its target.
    pub fn text(&self, path: &str) -> Option<&String> {
        self.links
            .get(path)
            .and_then(|target| self.files.get(target))
            .or_else(|| self.files.get(path))
    }

    /// Parses every file; a file that does not parse is reported and left out.
    pub fn parse(&self) -> Manifests {
        let mut files = BTreeMap::new();
        let mut errors = Vec::new();
        for path in self.files.keys() {
            let text = self.text(path).map_or("", String::as_str);
            match parse_documents(text) {
                Ok(docs) => {
                    files.insert(path.clone(), docs);
                }
                Err(e) => errors.push(Violation::new(path, Rule::YamlSyntax, e.to_string())),
            }
        }
        Manifests { files, errors }
    }
}

fn read(path: &Path) -> Result<String, LoadError> {
    fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

fn collect(root: &Path, dir: &Path, sources: &mut Sources) -> Result<(), LoadError> {
    let entries = fs::read_dir(dir).map_err(|source| LoadError::Read {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let path = entry
            .map_err(|source| LoadError::Read {
                path: dir.to_owned(),
                source,
            })?
            .path();
        if path.is_dir() {
            collect(root, &path, sources)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            let relative = relative_to(root, &path);
            let is_link = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            if is_link
                && let (Ok(target), Ok(base)) = (fs::canonicalize(&path), fs::canonicalize(root))
                && target.starts_with(&base)
            {
                sources
                    .links
                    .insert(relative.clone(), relative_to(&base, &target));
            }
            sources.files.insert(relative, read(&path)?);
        }
    }
    Ok(())
}

/// `path` relative to `root`, with `/` separators.
fn relative_to(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every document of a multi-document YAML text; empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, yaml_serde::Error> {
    let mut docs = Vec::new();
    for document in yaml_serde::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Parsed files by relative path.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub files: BTreeMap<String, Vec<Value>>,
    /// Files that did not parse.
    pub errors: Vec<Violation>,
}

impl Manifests {
    /// The documents of one file.
    pub fn docs(&self, path: &str) -> Option<&[Value]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// Files under a folder (prefix ending in `/`), with their documents.
    pub fn under<'a>(&'a self, folder: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.files
            .iter()
            .filter(move |(path, _)| path.starts_with(folder))
            .flat_map(|(path, docs)| docs.iter().map(move |d| (path.as_str(), d)))
    }

    /// Every document of every file.
    pub fn all(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.under("")
    }

    /// The component sets: folders whose files together give daprd its components
    /// (`deploy/dapr`, `deploy/compose/components`, each `deploy/local/<name>`).
    pub fn component_sets(&self) -> Vec<String> {
        let mut sets = vec![
            "deploy/dapr/".to_owned(),
            "deploy/compose/components/".to_owned(),
        ];
        let mut local: Vec<String> = self
            .files
            .keys()
            .filter_map(|p| p.strip_prefix("deploy/local/"))
            .filter_map(|rest| rest.split_once('/'))
            .map(|(name, _)| format!("deploy/local/{name}/"))
            .collect();
        local.dedup();
        sets.extend(local);
        sets
    }

    /// The component documents of one set: files directly in the folder (not sub-folders).
    pub fn components_in<'a>(&'a self, set: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.under(set).filter(move |(path, doc)| {
            !path[set.len()..].contains('/') && crate::yaml::kind(doc) == Some("Component")
        })
    }
}
