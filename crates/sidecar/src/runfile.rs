//! The Dapr CLI's multi-app run file (`dapr.yaml`), parsed and resolved the way `dapr run -f` does.
//!
//! Fidelity notes (dapr/cli 1.16):
//! * The CLI decodes leniently: unknown keys are ignored and any YAML scalar is accepted where a
//!   string is expected (`env: {PORT: 8080}` works). The same holds here, but unknown keys are
//!   reported as warnings so a typo (`appPorts`) does not fail silently.
//! * A value of the wrong shape (a map where a port is expected, a string where a list is) is an
//!   error naming the file, the key path and the line.
//! * `version` is required and non-zero; every app needs an existing `appDirPath`. Relative paths in
//!   `common` are relative to the file, in an app relative to its `appDirPath`; paths must exist.
//! * Resources: the app's `resourcesPaths` (+ deprecated `resourcesPath`), else
//!   `<appDirPath>/.dapr/resources` if it exists, else `common`'s, else `~/.dapr/components`.
//! * Shared keys left unset on an app take `common`'s value; `env` maps are merged, the app winning.
//! * `enableAppHealthCheck` with `appHealthCheckPath`, `appHealthProbeInterval` (seconds),
//!   `appHealthProbeTimeout` (milliseconds) and `appHealthThreshold` turns on app health checks.
//! * Keys that would change behaviour this sidecar does not implement (`appProtocol` other than
//!   `http`, `appSSL`, `unixDomainSocket`) are errors; keys that only concern
//!   `daprd` processes or files (`runtimePath`, log destinations, …) are warnings.
//! * `configFilePath` names a Dapr Configuration; its `spec.accessControl` decides which apps may
//!   invoke the app (the rest of the Configuration is not used).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::cli::{DEFAULT_MAX_BODY_SIZE, LogLevel, parse_listen_addresses, parse_quantity};
use sidecar_core::acl::AccessControl;
use sidecar_core::options::AppHealthOptions;
use sidecar_core::otel::TracingOptions;

mod raw;
use raw::{RawApp, RawFile, Scalar, unknown_key_warnings};

/// A problem with the run file; always names the file, and the key when there is one.
#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    #[error("cannot read run file {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid run file {file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("invalid run file {file}: key `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

/// One app, fully resolved: absolute paths, merged env, validated values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPlan {
    pub app_id: String,
    pub app_dir: PathBuf,
    pub app_port: Option<u16>,
    /// `None`: pick a free port.
    pub dapr_http_port: Option<u16>,
    pub dapr_grpc_port: Option<u16>,
    pub metrics_port: Option<u16>,
    /// Empty: no app process, only the sidecar (the CLI warns and does the same).
    pub command: Vec<String>,
    /// The run file's env for this app (common merged under the app's own).
    pub env: BTreeMap<String, String>,
    pub resources_paths: Vec<PathBuf>,
    pub log_level: Option<LogLevel>,
    pub app_channel_address: String,
    pub listen_addresses: Vec<IpAddr>,
    pub max_body_size: usize,
    /// `enableAppHealthCheck` with the `appHealth*` settings.
    pub app_health: Option<AppHealthOptions>,
    /// `spec.accessControl` of the Configuration named by `configFilePath`.
    pub access_control: Option<AccessControl>,
    /// `spec.tracing` of that Configuration, when it exports spans.
    pub tracing: Option<TracingOptions>,
    /// How many instances to run: 1 unless `--scale` says otherwise (see [`crate::scale`]).
    pub replicas: usize,
}

/// The whole run file after resolution.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub file: PathBuf,
    pub name: Option<String>,
    pub apps: Vec<AppPlan>,
    /// Tolerated oddities (unknown or ignored keys), to be logged.
    pub warnings: Vec<String>,
    /// The `console` key: the runner's console, as the file sets it.
    pub console: ConsoleKeys,
}

/// What the run file says of the console; flags override it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleKeys {
    pub port: Option<u16>,
    pub enabled: Option<bool>,
    pub address: Option<IpAddr>,
}

/// Reads, parses and resolves a run file. A directory means its `dapr.yaml`, as `dapr run -f .`.
pub fn load(file: &Path) -> Result<RunPlan, RunFileError> {
    let joined;
    let file = if file.is_dir() {
        joined = file.join("dapr.yaml");
        joined.as_path()
    } else {
        file
    };
    let text = std::fs::read_to_string(file).map_err(|source| RunFileError::Read {
        file: file.to_owned(),
        source,
    })?;
    parse(file, &text, dirs_home())
}

fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Parses and resolves run-file text; `file` locates relative paths and names errors.
pub fn parse(file: &Path, text: &str, home: Option<PathBuf>) -> Result<RunPlan, RunFileError> {
    let parse_err = |message: String| RunFileError::Parse {
        file: file.to_owned(),
        message,
    };
    let raw: RawFile = yaml_serde::from_str(text).map_err(|e| parse_err(e.to_string()))?;
    let value: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|e| parse_err(e.to_string()))?;
    let mut warnings = unknown_key_warnings(&value);

    let invalid = |key: &str, message: String| RunFileError::Invalid {
        file: file.to_owned(),
        key: key.to_owned(),
        message,
    };
    match raw.version {
        None | Some(0) => return Err(invalid("version", "required field not found".into())),
        Some(v) if v < 0 => return Err(invalid("version", format!("{v} is not a version"))),
        Some(_) => {}
    }
    let base = absolute(file.parent().unwrap_or(Path::new(".")));
    let common = raw.common.unwrap_or_default();
    let raw_apps = raw.apps.unwrap_or_default();
    if raw_apps.is_empty() {
        return Err(invalid("apps", "no apps to run".into()));
    }

    let common_resources = resolve_paths(&base, &common, "common", &invalid)?;
    let mut apps = Vec::with_capacity(raw_apps.len());
    for (i, app) in raw_apps.iter().enumerate() {
        let at = format!("apps[{i}]");
        apps.push(resolve_app(
            &base,
            &common,
            &common_resources,
            app,
            &at,
            home.as_deref(),
            &invalid,
            &mut warnings,
        )?);
    }

    let mut ids = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for (i, app) in apps.iter().enumerate() {
        if !ids.insert(app.app_id.clone()) {
            return Err(invalid(
                &format!("apps[{i}].appID"),
                format!("duplicate app id {:?}", app.app_id),
            ));
        }
        if let Some(p) = app.dapr_http_port
            && !ports.insert(p)
        {
            return Err(invalid(
                &format!("apps[{i}].daprHTTPPort"),
                format!("port {p} is used by another app"),
            ));
        }
    }

    let console = match raw.console {
        None => ConsoleKeys::default(),
        Some(c) => ConsoleKeys {
            port: c
                .port
                .map(|p| {
                    u16::try_from(p)
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| invalid("console.port", format!("{p} is not a port")))
                })
                .transpose()?,
            enabled: c.enabled,
            address: c
                .address
                .map(|a| {
                    a.0.trim().parse::<IpAddr>().map_err(|_| {
                        invalid("console.address", format!("{:?} is not an IP address", a.0))
                    })
                })
                .transpose()?,
        },
    };
    Ok(RunPlan {
        file: absolute(file),
        name: raw.name.map(|s| s.0).filter(|s| !s.is_empty()),
        apps,
        warnings,
        console,
    })
}

type InvalidFn<'a> = dyn Fn(&str, String) -> RunFileError + 'a;

#[allow(clippy::too_many_arguments)]
fn resolve_app(
    base: &Path,
    common: &RawApp,
    common_resources: &[PathBuf],
    app: &RawApp,
    at: &str,
    home: Option<&Path>,
    invalid: &InvalidFn<'_>,
    warnings: &mut Vec<String>,
) -> Result<AppPlan, RunFileError> {
    let key = |k: &str| format!("{at}.{k}");
    let dir = app
        .app_dir_path
        .as_ref()
        .map(|s| s.0.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(&key("appDirPath"), "required field not found".into()))?;
    let app_dir = existing(base, &dir).ok_or_else(|| {
        invalid(
            &key("appDirPath"),
            format!("directory {dir:?} does not exist (relative to the run file)"),
        )
    })?;
    let app_id = match app
        .app_id
        .as_ref()
        .map(|s| s.0.trim())
        .filter(|s| !s.is_empty())
    {
        Some(id) => id.to_owned(),
        None => app_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                invalid(
                    &key("appID"),
                    "cannot derive an app id from appDirPath".into(),
                )
            })?,
    };

    // Shared keys: the app's value, else common's.
    let pick = |a: &Option<Scalar>, c: &Option<Scalar>| {
        a.as_ref()
            .or(c.as_ref())
            .map(|s| s.0.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let protocol = pick(&app.app_protocol, &common.app_protocol).unwrap_or_else(|| "http".into());
    if !protocol.eq_ignore_ascii_case("http") {
        return Err(invalid(
            &key("appProtocol"),
            format!("{protocol:?} is not supported: only http apps are"),
        ));
    }
    if app.app_ssl.or(common.app_ssl) == Some(true) {
        return Err(invalid(
            &key("appSSL"),
            "TLS to the app is not supported".into(),
        ));
    }
    let app_health = if app
        .enable_app_health_check
        .or(common.enable_app_health_check)
        == Some(true)
    {
        let path = pick(&app.app_health_check_path, &common.app_health_check_path);
        let interval = pick(
            &app.app_health_probe_interval,
            &common.app_health_probe_interval,
        );
        let timeout = pick(
            &app.app_health_probe_timeout,
            &common.app_health_probe_timeout,
        );
        let threshold = pick(&app.app_health_threshold, &common.app_health_threshold);
        Some(
            AppHealthOptions::from_values(
                path.as_deref(),
                interval.as_deref(),
                timeout.as_deref(),
                threshold.as_deref(),
            )
            .map_err(|e| invalid(&key(e.setting.run_file_key()), e.why))?,
        )
    } else {
        None
    };
    if let Some(s) = app.unix_domain_socket.as_ref().filter(|s| !s.0.is_empty()) {
        return Err(invalid(
            &key("unixDomainSocket"),
            format!("{:?}: the API listens on TCP only", s.0),
        ));
    }

    // Like every path: an app's relative to its directory, common's relative to the file.
    let given = |raw: &RawApp| {
        raw.config_file_path
            .as_ref()
            .map(|s| s.0.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let config_file = given(app)
        .map(|p| app_dir.join(p))
        .or_else(|| given(common).map(|p| base.join(p)));
    let (access_control, tracing) = match config_file {
        None => (None, None),
        Some(path) => {
            let tracing = crate::cli::read_tracing(&path)
                .map_err(|e| invalid(&key("configFilePath"), e.to_string()))?;
            warnings.extend(
                tracing
                    .ignored
                    .iter()
                    .map(|what| format!("{}: {what}", key("configFilePath"))),
            );
            let access_control = crate::cli::read_access_control(&path)
                .map_err(|e| invalid(&key("configFilePath"), e.to_string()))?;
            (access_control, tracing.options)
        }
    };

    let log_level = match pick(&app.log_level, &common.log_level) {
        None => None,
        Some(l) => Some(LogLevel::parse(&l).ok_or_else(|| {
            invalid(
                &key("logLevel"),
                format!("{l:?} is not one of debug, info, warn, error"),
            )
        })?),
    };
    let max_body_size = match pick(&app.max_body_size, &common.max_body_size) {
        None => DEFAULT_MAX_BODY_SIZE,
        Some(q) => parse_quantity(&q)
            .map_err(|why| invalid(&key("maxBodySize"), format!("{q:?}: {why}")))?,
    };
    let listen_addresses = match pick(&app.api_listen_addresses, &common.api_listen_addresses) {
        None => Vec::new(),
        Some(list) => parse_listen_addresses(&list)
            .map_err(|e| invalid(&key("apiListenAddresses"), e.to_string()))?,
    };
    let app_channel_address =
        pick(&app.app_channel_address, &None).unwrap_or_else(|| "127.0.0.1".to_owned());

    let mut env: BTreeMap<String, String> = common
        .env
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    env.extend(
        app.env
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );

    let mut resources_paths = resolve_paths(&app_dir, app, at, invalid)?;
    if resources_paths.is_empty() {
        let local = app_dir.join(".dapr").join("resources");
        if local.is_dir() {
            resources_paths.push(local);
        } else if !common_resources.is_empty() {
            resources_paths = common_resources.to_vec();
        } else if let Some(default) = home.map(|h| h.join(".dapr").join("components"))
            && default.is_dir()
        {
            resources_paths.push(default);
        } else {
            warnings.push(format!(
                "app {app_id:?}: no resources path found; it runs without components"
            ));
        }
    }

    let command: Vec<String> = app.command.iter().flatten().map(|s| s.0.clone()).collect();
    if command.first().is_some_and(|c| c.trim().is_empty()) {
        return Err(invalid(
            &key("command"),
            "the first element (the program) is empty".into(),
        ));
    }

    Ok(AppPlan {
        app_port: port(app.app_port, &key("appPort"), invalid)?,
        dapr_http_port: port(app.dapr_http_port, &key("daprHTTPPort"), invalid)?,
        dapr_grpc_port: port(app.dapr_grpc_port, &key("daprGRPCPort"), invalid)?,
        metrics_port: port(app.metrics_port, &key("metricsPort"), invalid)?,
        app_id,
        app_dir,
        command,
        env,
        resources_paths,
        log_level,
        app_channel_address,
        listen_addresses,
        max_body_size,
        app_health,
        access_control,
        tracing,
        replicas: 1,
    })
}

/// Ports are Go ints in the CLI: zero or negative means "unset".
fn port(
    value: Option<i64>,
    key: &str,
    invalid: &InvalidFn<'_>,
) -> Result<Option<u16>, RunFileError> {
    match value {
        None => Ok(None),
        Some(v) if v <= 0 => Ok(None),
        Some(v) => u16::try_from(v)
            .map(Some)
            .map_err(|_| invalid(key, format!("{v} is not a TCP port"))),
    }
}

/// `resourcesPaths` + the deprecated `resourcesPath`, each resolved against `base` and checked.
fn resolve_paths(
    base: &Path,
    section: &RawApp,
    at: &str,
    invalid: &InvalidFn<'_>,
) -> Result<Vec<PathBuf>, RunFileError> {
    let mut out = Vec::new();
    let listed = section.resources_paths.iter().flatten().enumerate();
    let items = listed
        .map(|(i, p)| (format!("{at}.resourcesPaths[{i}]"), p))
        .chain(
            section
                .resources_path
                .iter()
                .map(|p| (format!("{at}.resourcesPath"), p)),
        );
    for (key, p) in items {
        let p = p.0.trim();
        if p.is_empty() {
            continue;
        }
        let path =
            existing(base, p).ok_or_else(|| invalid(&key, format!("path {p:?} does not exist")))?;
        out.push(path);
    }
    Ok(out)
}

/// Resolves `~` and relative paths against `base`; `None` if nothing exists there.
fn existing(base: &Path, p: &str) -> Option<PathBuf> {
    let expanded = match p.strip_prefix("~/") {
        Some(rest) => dirs_home()?.join(rest),
        None => PathBuf::from(p),
    };
    let path = if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    };
    path.exists().then(|| normalize(&path))
}

fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_owned())
    };
    normalize(&joined)
}

/// Removes `.` and `..` components without touching the file system (like Go's `filepath.Clean`).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests;
