//! Command line of the `sidecar` binary.
//!
//! Two shapes, mirroring the two tools it stands in for:
//! * `sidecar --app-id X [daprd flags]`: one sidecar, flags named and defaulted like `daprd`'s, so a
//!   script written for `daprd` runs unchanged. `daprd` uses Go's `flag` package, which accepts
//!   `-flag` as well as `--flag`; [`normalize_args`] rewrites the single-dash form first.
//! * `sidecar run -f dapr.yaml`: the Dapr CLI's multi-app run, hosted in this one process.
//!
//! `daprd` flags that this sidecar does not implement are still recognised: when the value given is
//! `daprd`'s default (so it changes nothing) or the flag has no effect on anything an app can observe,
//! it is accepted with a warning; otherwise parsing fails with an error naming the flag. Silently
//! ignoring, say, `--app-protocol grpc` would give a sidecar that looks up but never talks to the app.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use sidecar_core::acl::AccessControl;
use sidecar_core::options::{AppHealthOptions, AppHealthSetting};
use sidecar_core::otel::{TracingOptions, TracingSection};

mod scale_flag;
mod unsupported;
mod values;
pub use scale_flag::{MAX_REPLICAS, Scale, ScaleFlagError};
pub use values::{normalize_args, parse_listen_addresses, parse_quantity};

/// Default `--max-body-size` of daprd: 4 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 4 << 20;

#[derive(Debug, Parser)]
#[command(
    name = "sidecar",
    version,
    about = "Local Dapr-compatible sidecar (HTTP API) and multi-app runner",
    args_conflicts_with_subcommands = true,
    after_help = "Environment: DAPR_API_TOKEN (required on every API call but the healthz \
                  endpoints), APP_API_TOKEN (sent to the app as dapr-api-token).",
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub daprd: DaprdArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every app of a multi-app run file (the Dapr CLI's `dapr.yaml`), one sidecar per app.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Path to the run file, or a directory holding `dapr.yaml`.
    #[arg(short = 'f', long = "run-file", value_name = "FILE")]
    pub file: PathBuf,
    /// Seconds each app gets to exit after SIGTERM before it is killed.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub shutdown_grace_seconds: u64,
    /// Log level of the sidecars; the most verbose of this and the apps' `logLevel` applies.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Runs N instances of app APP, each with its own sidecar and ports and the same app id
    /// (competing consumers, as replicas under Kubernetes); repeat for several apps.
    #[arg(long = "scale", value_name = "APP=N")]
    pub scale: Vec<Scale>,
    /// Port of the run's console (default 9999, or the run file's `console.port`).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub console_port: Option<u16>,
    /// Address the console listens on (default 127.0.0.1); any other address needs a token.
    #[arg(long, value_name = "IP")]
    pub console_address: Option<std::net::IpAddr>,
    /// Token the console requires on every request (`Authorization: Bearer` or `?token=`).
    #[arg(
        long,
        env = "SIDECAR_CONSOLE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub console_token: Option<String>,
    /// Serve no console.
    #[arg(long)]
    pub no_console: bool,
}

/// Ordered from most to least verbose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// Parses a run-file `logLevel` the way daprd's flag would.
    pub fn parse(value: &str) -> Option<LogLevel> {
        <LogLevel as ValueEnum>::from_str(value, true).ok()
    }
}

/// The binary's Tokio runtime. Its workers collect the allocator's heap as they go idle
/// ([`heap_trim`]): otherwise what a burst freed (a drained broker backlog) stays resident.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    heap_trim::on_park(tokio::runtime::Builder::new_multi_thread().enable_all()).build()
}

/// Logs to stderr at `level` (daprd's `--log-level`), as JSON lines when `json`.
pub fn init_tracing(level: LogLevel, json: bool) {
    let filter = tracing_subscriber::EnvFilter::new(level.as_filter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The `daprd` flags. Strings are kept for the unsupported ones so [`DaprdArgs::resolve`] can tell a
/// harmless default from a value that would change behaviour.
#[derive(Debug, Args)]
pub struct DaprdArgs {
    /// A unique id for the app: state key prefix, CloudEvent source, consumer group.
    #[arg(long, required = true)]
    pub app_id: Option<String>,
    /// Port the app listens on; without it there is no app channel (no subscriptions).
    #[arg(long)]
    pub app_port: Option<u16>,
    /// Port of the Dapr HTTP API.
    #[arg(long, default_value_t = 3500)]
    pub dapr_http_port: u16,
    /// Directory of Component/Subscription/Resiliency YAML; may be repeated.
    #[arg(long = "resources-path", value_name = "DIR")]
    pub resources_path: Vec<PathBuf>,
    /// Deprecated alias of --resources-path.
    #[arg(long = "components-path", value_name = "DIR", hide = true)]
    pub components_path: Vec<PathBuf>,
    /// Address the app listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub app_channel_address: String,
    /// debug, info, warn or error.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Log as JSON lines.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub log_as_json: Option<bool>,
    /// Comma-separated IP addresses the API listens on (default: all interfaces).
    #[arg(long, value_name = "ADDRS")]
    pub dapr_listen_addresses: Option<String>,
    /// Maximum request body size, a Kubernetes quantity such as `4Mi`.
    #[arg(long, default_value = "4Mi")]
    pub max_body_size: String,
    /// Deprecated: maximum request body size in MB.
    #[arg(long, hide = true)]
    pub dapr_http_max_request_size: Option<u64>,
    /// Probe the app's health and give it no work while it is unhealthy.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_app_health_check: Option<bool>,
    /// Path of the health probe (default /healthz).
    #[arg(long, value_name = "PATH")]
    pub app_health_check_path: Option<String>,
    /// Seconds between health probes (default 5).
    #[arg(long, value_name = "SECONDS")]
    pub app_health_probe_interval: Option<String>,
    /// Timeout of one health probe in milliseconds (default 500).
    #[arg(long, value_name = "MS")]
    pub app_health_probe_timeout: Option<String>,
    /// Failed probes in a row that make the app unhealthy (default 3).
    #[arg(long, value_name = "N")]
    pub app_health_threshold: Option<String>,
    /// A Dapr Configuration file; its `spec.accessControl` decides which apps may invoke this
    /// one (the rest of it is not used).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    // Flags with no observable effect here: accepted whatever the value.
    #[arg(long, hide = true)]
    pub mode: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_metrics: Option<bool>,
    #[arg(long, hide = true)]
    pub metrics_port: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_profiling: Option<bool>,
    #[arg(long, hide = true)]
    pub profile_port: Option<String>,
    #[arg(long, hide = true)]
    pub placement_host_address: Option<String>,
    #[arg(long, hide = true)]
    pub scheduler_host_address: Option<String>,
    #[arg(long, hide = true)]
    pub dapr_internal_grpc_port: Option<String>,
    #[arg(long, hide = true)]
    pub dapr_graceful_shutdown_seconds: Option<String>,
    #[arg(long, hide = true)]
    pub dapr_block_shutdown_duration: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_api_logging: Option<bool>,
    #[arg(long, hide = true)]
    pub allowed_origins: Option<String>,
    #[arg(long, hide = true)]
    pub control_plane_address: Option<String>,
    #[arg(long, hide = true)]
    pub control_plane_trust_domain: Option<String>,
    #[arg(long, hide = true)]
    pub control_plane_namespace: Option<String>,
    #[arg(long, hide = true)]
    pub sentry_address: Option<String>,

    // Flags that change behaviour this sidecar does not implement: accepted only at the default.
    #[arg(long, hide = true)]
    pub dapr_grpc_port: Option<String>,
    #[arg(long, hide = true)]
    pub app_protocol: Option<String>,
    #[arg(long, hide = true)]
    pub dapr_public_port: Option<String>,
    #[arg(long, hide = true)]
    pub unix_domain_socket: Option<String>,
    #[arg(long, hide = true)]
    pub app_max_concurrency: Option<i64>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_mtls: Option<bool>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub app_ssl: Option<bool>,
    #[arg(long, hide = true)]
    pub read_buffer_size: Option<String>,
    #[arg(long, hide = true)]
    pub dapr_http_read_buffer_size: Option<String>,
}

/// A flag value this sidecar cannot honour, or a malformed value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    #[error("flag --{flag}={value} is not supported by this sidecar: {why}")]
    Unsupported {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("invalid value {value:?} for --{flag}: {why}")]
    Invalid {
        flag: &'static str,
        value: String,
        why: String,
    },
}

/// Everything the single-sidecar mode needs, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaprdConfig {
    pub app_id: String,
    pub app_port: Option<u16>,
    pub app_channel_address: String,
    pub dapr_http_port: u16,
    pub listen_addresses: Vec<IpAddr>,
    pub resources_paths: Vec<PathBuf>,
    pub max_body_size: usize,
    pub api_token: Option<String>,
    pub app_api_token: Option<String>,
    pub log_level: LogLevel,
    pub log_as_json: bool,
    /// `--enable-app-health-check` with its settings.
    pub app_health: Option<AppHealthOptions>,
    /// `spec.accessControl` of `--config`.
    pub access_control: Option<AccessControl>,
    /// `spec.tracing` of `--config`, when it exports spans.
    pub tracing: Option<TracingOptions>,
    /// Accepted-but-ignored flags, to be logged once tracing is up.
    pub warnings: Vec<String>,
}

impl DaprdArgs {
    /// Validates the flags. `env` looks up environment variables (`DAPR_API_TOKEN`, `APP_API_TOKEN`),
    /// read here rather than by clap because daprd has no flag for them.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<DaprdConfig, CliError> {
        let mut warnings = Vec::new();
        self.check_unsupported(&mut warnings)?;

        let mut resources_paths = self.resources_path.clone();
        if !self.components_path.is_empty() {
            warnings.push("--components-path is deprecated, use --resources-path".to_owned());
            resources_paths.extend(self.components_path.iter().cloned());
        }

        let mut max_body_size =
            parse_quantity(&self.max_body_size).map_err(|why| CliError::Invalid {
                flag: "max-body-size",
                value: self.max_body_size.clone(),
                why,
            })?;
        if let Some(mb) = self.dapr_http_max_request_size {
            warnings.push("--dapr-http-max-request-size is deprecated, use --max-body-size".into());
            max_body_size = usize::try_from(mb << 20).unwrap_or(usize::MAX);
        }

        let listen_addresses = match &self.dapr_listen_addresses {
            Some(list) => parse_listen_addresses(list)?,
            None => Vec::new(),
        };

        let (access_control, tracing) = match &self.config {
            Some(path) if !path.as_os_str().is_empty() => {
                warnings.push(format!(
                    "--config {}: only spec.accessControl and spec.tracing are applied (metrics and features are not)",
                    path.display()
                ));
                let tracing = read_tracing(path)?;
                warnings.extend(
                    tracing
                        .ignored
                        .iter()
                        .map(|what| format!("--config {}: {what}", path.display())),
                );
                (read_access_control(path)?, tracing.options)
            }
            _ => (None, None),
        };

        let app_health = if self.enable_app_health_check == Some(true) {
            Some(self.app_health_options()?)
        } else {
            None
        };

        Ok(DaprdConfig {
            app_id: self.app_id.clone().unwrap_or_default(),
            app_port: self.app_port.filter(|p| *p > 0),
            app_channel_address: self.app_channel_address.clone(),
            dapr_http_port: self.dapr_http_port,
            listen_addresses,
            resources_paths,
            max_body_size,
            api_token: env("DAPR_API_TOKEN").filter(|t| !t.is_empty()),
            app_api_token: env("APP_API_TOKEN").filter(|t| !t.is_empty()),
            log_level: self.log_level,
            log_as_json: self.log_as_json.unwrap_or(false),
            app_health,
            access_control,
            tracing,
            warnings,
        })
    }
}

/// The access control of a Configuration file (`--config`, run-file `configFilePath`).
pub fn read_access_control(path: &std::path::Path) -> Result<Option<AccessControl>, CliError> {
    let invalid = |why: String| CliError::Invalid {
        flag: "config",
        value: path.display().to_string(),
        why,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read the Configuration: {e}")))?;
    AccessControl::from_configuration(&text).map_err(|e| invalid(e.to_string()))
}

/// The tracing section of a Configuration file (`--config`, run-file `configFilePath`).
pub fn read_tracing(path: &std::path::Path) -> Result<TracingSection, CliError> {
    let invalid = |why: String| CliError::Invalid {
        flag: "config",
        value: path.display().to_string(),
        why,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read the Configuration: {e}")))?;
    TracingOptions::from_configuration(&text).map_err(|e| invalid(e.to_string()))
}

impl DaprdArgs {
    fn app_health_options(&self) -> Result<AppHealthOptions, CliError> {
        AppHealthOptions::from_values(
            self.app_health_check_path.as_deref(),
            self.app_health_probe_interval.as_deref(),
            self.app_health_probe_timeout.as_deref(),
            self.app_health_threshold.as_deref(),
        )
        .map_err(|e| {
            let value = match e.setting {
                AppHealthSetting::Path => &self.app_health_check_path,
                AppHealthSetting::Interval => &self.app_health_probe_interval,
                AppHealthSetting::Timeout => &self.app_health_probe_timeout,
                AppHealthSetting::Threshold => &self.app_health_threshold,
            };
            CliError::Invalid {
                flag: e.setting.flag(),
                value: value.clone().unwrap_or_else(|| "(default)".into()),
                why: e.why,
            }
        })
    }
}

#[cfg(test)]
mod tests;
