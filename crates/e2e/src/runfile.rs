//! A run file for one test, derived from the repository's `dapr.yaml`: the same apps, commands and
//! settings, with what must differ per test substituted (free ports, absolute paths, an app
//! directory of its own, extra environment). Deriving it, rather than writing a second copy, makes
//! the test fail when `dapr.yaml` itself stops working.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use service_testing::free_port;
use yaml_serde::{Mapping, Value};

use crate::Binaries;

/// The ports one app of the run got (one instance of it, when the run scales the app).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPorts {
    pub app_id: String,
    pub app_port: u16,
    pub dapr_http_port: u16,
    /// 1-based index among the app's instances (`--scale`); 1 for an app run once.
    pub instance: usize,
    /// Process id of the instance, once the runner's table of instances has been read.
    pub pid: Option<u32>,
}

/// A run file being prepared, then written.
#[derive(Debug, Clone)]
pub struct RunFile {
    doc: Value,
    /// Per app: variables to set (`Some`) or to remove (`None`).
    env: BTreeMap<String, BTreeMap<String, Option<String>>>,
}

impl RunFile {
    /// Parses the run file at `path` (normally the repository's `dapr.yaml`).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: Value =
            yaml_serde::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if doc.get("apps").and_then(Value::as_sequence).is_none() {
            bail!("{} has no `apps` list", path.display());
        }
        Ok(Self {
            doc,
            env: BTreeMap::new(),
        })
    }

    /// Sets (or overrides) an environment variable of app `app_id`.
    pub fn env(mut self, app_id: &str, name: &str, value: impl Into<String>) -> Self {
        self.env
            .entry(app_id.to_owned())
            .or_default()
            .insert(name.to_owned(), Some(value.into()));
        self
    }

    /// Keeps only app `app_id`: the run file of a second pod of that app (same app id, its own
    /// process and sidecar, ports assigned by [`RunFile::write`]), as a Kubernetes replica is.
    pub fn only(mut self, app_id: &str) -> anyhow::Result<Self> {
        let apps = self
            .doc
            .get_mut("apps")
            .and_then(Value::as_sequence_mut)
            .context("no apps")?;
        apps.retain(|a| a.get("appID").and_then(Value::as_str) == Some(app_id));
        anyhow::ensure!(!apps.is_empty(), "no app {app_id} in the run file");
        Ok(self)
    }

    /// Removes variable `name` from app `app_id`'s env in the file (`common.env` is untouched).
    pub fn remove_env(mut self, app_id: &str, name: &str) -> Self {
        self.env
            .entry(app_id.to_owned())
            .or_default()
            .insert(name.to_owned(), None);
        self
    }

    /// Replaces `common.resourcesPaths` with the single directory `dir`.
    pub fn common_resources(mut self, dir: &Path) -> Self {
        if let Some(common) = self.doc.get_mut("common").and_then(Value::as_mapping_mut) {
            common.insert(
                "resourcesPaths".into(),
                Value::Sequence(vec![dir.display().to_string().into()]),
            );
        }
        self
    }

    /// Replaces `common.configFilePath` (every sidecar's Configuration) with `path`.
    pub fn common_config(mut self, path: &Path) -> Self {
        if let Some(common) = self.doc.get_mut("common").and_then(Value::as_mapping_mut) {
            common.insert(
                "configFilePath".into(),
                Value::String(path.display().to_string()),
            );
        }
        self
    }

    /// The app ids of the file, in order.
    pub fn app_ids(&self) -> Vec<String> {
        self.apps()
            .filter_map(|a| a.get("appID").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    /// The value the file gives variable `name` of app `app_id` (its own env, then `common.env`),
    /// before any override.
    pub fn setting(&self, app_id: &str, name: &str) -> Option<String> {
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        self.apps()
            .find(|a| a.get("appID").and_then(Value::as_str) == Some(app_id))
            .and_then(|a| a.get("env"))
            .and_then(|e| e.get(name))
            .and_then(scalar)
            .or_else(|| {
                self.doc
                    .get("common")
                    .and_then(|c| c.get("env"))
                    .and_then(|e| e.get(name))
                    .and_then(scalar)
            })
    }

    fn apps(&self) -> impl Iterator<Item = &Value> {
        self.doc
            .get("apps")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
    }

    /// Writes the file into `dir`, which also becomes every app's `appDirPath` (so relative paths
    /// in the apps' settings, such as a mail folder, land there). `repo` resolves the original
    /// relative `resourcesPaths`; commands become absolute paths from `bins`.
    pub fn write(
        mut self,
        dir: &Path,
        repo: &Path,
        bins: &Binaries,
    ) -> anyhow::Result<(PathBuf, Vec<AppPorts>)> {
        let repo = repo
            .canonicalize()
            .with_context(|| format!("resolving {}", repo.display()))?;
        let dir_text = dir.display().to_string();
        if let Some(common) = self.doc.get_mut("common").and_then(Value::as_mapping_mut) {
            absolutize_paths(common, &repo);
        }
        let mut ports = Vec::new();
        let apps = self
            .doc
            .get_mut("apps")
            .and_then(Value::as_sequence_mut)
            .context("no apps")?;
        for app in apps.iter_mut() {
            let app = app.as_mapping_mut().context("an app is not a mapping")?;
            let app_id = app
                .get("appID")
                .and_then(Value::as_str)
                .context("an app has no appID")?
                .to_owned();
            // Per-app resources are relative to the app's original directory, the repository.
            absolutize_paths(app, &repo);
            app.insert("appDirPath".into(), dir_text.clone().into());
            let (app_port, dapr_http_port) = (free_port(), free_port());
            app.insert("appPort".into(), u64::from(app_port).into());
            app.insert("daprHTTPPort".into(), u64::from(dapr_http_port).into());
            let command = app
                .get("command")
                .and_then(Value::as_sequence)
                .and_then(|c| c.first())
                .and_then(Value::as_str)
                .with_context(|| format!("app {app_id} has no command"))?;
            let program = Path::new(command)
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("app {app_id}: odd command {command:?}"))?;
            let mut command = app
                .get("command")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            if let Some(first) = command.first_mut() {
                *first = bins.path(program).display().to_string().into();
            }
            app.insert("command".into(), Value::Sequence(command));
            if let Some(extra) = self.env.remove(&app_id) {
                let env = app
                    .entry("env".into())
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                let env = env.as_mapping_mut().context("env is not a mapping")?;
                for (k, v) in extra {
                    match v {
                        Some(v) => env.insert(k.into(), v.into()),
                        None => env.remove(k.as_str()),
                    };
                }
            }
            ports.push(AppPorts {
                app_id,
                app_port,
                dapr_http_port,
                instance: 1,
                pid: None,
            });
        }
        if let Some(app_id) = self.env.keys().next() {
            bail!("no app {app_id} in the run file");
        }
        let path = dir.join("dapr.yaml");
        std::fs::write(&path, yaml_serde::to_string(&self.doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok((path, ports))
    }
}

/// Makes `resourcesPaths` (and the deprecated `resourcesPath`) and `configFilePath` of a
/// section absolute.
fn absolutize_paths(section: &mut Mapping, base: &Path) {
    let abs = |v: &Value| -> Value {
        match v.as_str() {
            Some(p) if !Path::new(p).is_absolute() => base.join(p).display().to_string().into(),
            _ => v.clone(),
        }
    };
    if let Some(Value::Sequence(paths)) = section.get_mut("resourcesPaths") {
        for p in paths.iter_mut() {
            *p = abs(p);
        }
    }
    for key in ["resourcesPath", "configFilePath"] {
        if let Some(p) = section.get_mut(key) {
            *p = abs(p);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const FILE: &str = r#"
version: 1
common:
  resourcesPaths: [./deploy/local/in-memory]
  configFilePath: ./deploy/dapr/configuration.yaml
  env: { RUST_LOG: info, SHARED: "1" }
apps:
  - appID: api
    appDirPath: .
    appPort: 8080
    daprHTTPPort: 3500
    command: ["target/debug/task-api", "serve"]
    env: { JWT_SECRET: s3cret }
  - appID: worker
    appDirPath: .
    appPort: 8081
    command: ["target/debug/email-worker"]
"#;

    fn fake_bins() -> (tempfile::TempDir, Binaries) {
        let dir = tempfile::tempdir().unwrap();
        for name in crate::binaries::REQUIRED {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let bins = Binaries::in_dir(dir.path().to_path_buf()).unwrap();
        (dir, bins)
    }

    #[test]
    fn ports_paths_and_env_are_substituted() {
        let (_b, bins) = fake_bins();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("dapr.yaml"), FILE).unwrap();
        let rf = RunFile::from_file(&src.path().join("dapr.yaml")).unwrap();
        assert_eq!(rf.setting("api", "JWT_SECRET").as_deref(), Some("s3cret"));
        assert_eq!(rf.setting("worker", "SHARED").as_deref(), Some("1"));
        assert_eq!(rf.setting("worker", "JWT_SECRET"), None);

        let out = tempfile::tempdir().unwrap();
        let (path, ports) = rf
            .env("worker", "SMTP_URL", "smtp://127.0.0.1:25")
            .remove_env("api", "JWT_SECRET")
            .write(out.path(), src.path(), &bins)
            .unwrap();
        let written: Value =
            yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();

        assert_eq!(ports.len(), 2);
        assert!(
            ports
                .iter()
                .all(|p| p.app_port != 8080 && p.app_port != 8081)
        );
        let apps = written["apps"].as_sequence().unwrap();
        assert_eq!(
            apps[0]["appPort"].as_u64(),
            Some(u64::from(ports[0].app_port))
        );
        assert_eq!(
            apps[1]["daprHTTPPort"].as_u64(),
            Some(u64::from(ports[1].dapr_http_port))
        );
        assert_eq!(
            apps[0]["command"][0].as_str().unwrap(),
            bins.path("task-api").display().to_string()
        );
        assert_eq!(apps[0]["command"][1].as_str(), Some("serve"));
        assert_eq!(
            apps[1]["appDirPath"].as_str().unwrap(),
            out.path().display().to_string()
        );
        assert_eq!(
            apps[1]["env"]["SMTP_URL"].as_str(),
            Some("smtp://127.0.0.1:25")
        );
        assert!(apps[0]["env"].get("JWT_SECRET").is_none());
        assert_eq!(written["common"]["env"]["SHARED"].as_str(), Some("1"));
        let res = written["common"]["resourcesPaths"][0].as_str().unwrap();
        assert!(Path::new(res).is_absolute(), "{res}");
        assert!(res.ends_with("deploy/local/in-memory"), "{res}");
        let config = written["common"]["configFilePath"].as_str().unwrap();
        assert!(Path::new(config).is_absolute(), "{config}");
        assert!(
            config.ends_with("deploy/dapr/configuration.yaml"),
            "{config}"
        );
    }

    #[test]
    fn env_for_an_unknown_app_is_an_error() {
        let (_b, bins) = fake_bins();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("dapr.yaml"), FILE).unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = RunFile::from_file(&src.path().join("dapr.yaml"))
            .unwrap()
            .env("nobody", "X", "1")
            .write(out.path(), src.path(), &bins)
            .unwrap_err();
        assert!(err.to_string().contains("no app nobody"), "{err}");
    }
}
