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

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Default `--max-body-size` of daprd: 4 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 4 << 20;

#[derive(Debug, Parser)]
#[command(
    name = "sidecar",
    version,
    about = "Local Dapr-compatible sidecar (HTTP API) and multi-app runner",
    args_conflicts_with_subcommands = true,
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
    /// Log level of the sidecars (each app's `logLevel` is reported but one process has one filter).
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
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
    pub config: Vec<String>,
    #[arg(long, hide = true)]
    pub dapr_public_port: Option<String>,
    #[arg(long, hide = true)]
    pub unix_domain_socket: Option<String>,
    #[arg(long, hide = true)]
    pub app_max_concurrency: Option<i64>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_app_health_check: Option<bool>,
    #[arg(long, hide = true)]
    pub app_health_check_path: Option<String>,
    #[arg(long, hide = true)]
    pub app_health_probe_interval: Option<String>,
    #[arg(long, hide = true)]
    pub app_health_probe_timeout: Option<String>,
    #[arg(long, hide = true)]
    pub app_health_threshold: Option<String>,
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
            warnings,
        })
    }

    fn check_unsupported(&self, warnings: &mut Vec<String>) -> Result<(), CliError> {
        let ignored: [(&str, bool); 16] = [
            ("enable-metrics", self.enable_metrics.is_some()),
            ("metrics-port", self.metrics_port.is_some()),
            ("enable-profiling", self.enable_profiling == Some(true)),
            ("profile-port", self.profile_port.is_some()),
            (
                "placement-host-address",
                self.placement_host_address.is_some(),
            ),
            (
                "scheduler-host-address",
                self.scheduler_host_address.is_some(),
            ),
            (
                "dapr-internal-grpc-port",
                self.dapr_internal_grpc_port.is_some(),
            ),
            (
                "dapr-graceful-shutdown-seconds",
                self.dapr_graceful_shutdown_seconds.is_some(),
            ),
            (
                "dapr-block-shutdown-duration",
                self.dapr_block_shutdown_duration.is_some(),
            ),
            ("enable-api-logging", self.enable_api_logging.is_some()),
            ("allowed-origins", self.allowed_origins.is_some()),
            (
                "control-plane-address",
                self.control_plane_address.is_some(),
            ),
            (
                "control-plane-trust-domain",
                self.control_plane_trust_domain.is_some(),
            ),
            (
                "control-plane-namespace",
                self.control_plane_namespace.is_some(),
            ),
            ("sentry-address", self.sentry_address.is_some()),
            (
                "app-health-check-path",
                self.app_health_check_path.is_some(),
            ),
        ];
        for (flag, given) in ignored {
            if given {
                warnings.push(format!(
                    "--{flag} has no effect on this sidecar and is ignored"
                ));
            }
        }
        for (flag, given) in [
            ("app-health-probe-interval", &self.app_health_probe_interval),
            ("app-health-probe-timeout", &self.app_health_probe_timeout),
            ("app-health-threshold", &self.app_health_threshold),
        ] {
            if given.is_some() {
                warnings.push(format!(
                    "--{flag} is ignored: app health checks are not supported"
                ));
            }
        }

        only_default(
            "mode",
            self.mode.as_deref(),
            &["standalone"],
            "only standalone mode exists",
        )?;
        only_default(
            "dapr-grpc-port",
            self.dapr_grpc_port.as_deref(),
            &["50001"],
            "the gRPC API is not served; only the HTTP API is",
        )?;
        only_default(
            "app-protocol",
            self.app_protocol
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref(),
            &["http"],
            "only plain HTTP apps are supported",
        )?;
        for config in &self.config {
            only_default(
                "config",
                Some(config.as_str()),
                &[""],
                "Configuration resources (tracing, features, access control) are not supported",
            )?;
        }
        only_default(
            "dapr-public-port",
            self.dapr_public_port.as_deref(),
            &[""],
            "there is no separate public health port",
        )?;
        only_default(
            "unix-domain-socket",
            self.unix_domain_socket.as_deref(),
            &[""],
            "the API listens on TCP only",
        )?;
        if let Some(n) = self.app_max_concurrency
            && n > 0
        {
            return Err(unsupported(
                "app-max-concurrency",
                n,
                "concurrency limits are not enforced",
            ));
        }
        if self.enable_app_health_check == Some(true) {
            return Err(unsupported(
                "enable-app-health-check",
                true,
                "app health checks are not implemented",
            ));
        }
        if self.enable_mtls == Some(true) {
            return Err(unsupported(
                "enable-mtls",
                true,
                "mTLS between sidecars is not implemented",
            ));
        }
        if self.app_ssl == Some(true) {
            return Err(unsupported(
                "app-ssl",
                true,
                "only plain HTTP apps are supported",
            ));
        }
        only_default(
            "read-buffer-size",
            self.read_buffer_size.as_deref(),
            &["4Ki", "4096"],
            "the header buffer size is fixed",
        )?;
        only_default(
            "dapr-http-read-buffer-size",
            self.dapr_http_read_buffer_size.as_deref(),
            &["4"],
            "the header buffer size is fixed",
        )?;
        Ok(())
    }
}

fn unsupported(flag: &'static str, value: impl ToString, why: &'static str) -> CliError {
    CliError::Unsupported {
        flag,
        value: value.to_string(),
        why,
    }
}

fn only_default(
    flag: &'static str,
    value: Option<&str>,
    defaults: &[&str],
    why: &'static str,
) -> Result<(), CliError> {
    match value {
        Some(v) if !defaults.contains(&v.trim()) => Err(unsupported(flag, v, why)),
        _ => Ok(()),
    }
}

/// Parses `--dapr-listen-addresses`: comma-separated IPs, `[::1]` brackets and `localhost` allowed.
pub fn parse_listen_addresses(list: &str) -> Result<Vec<IpAddr>, CliError> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bare = part.trim_start_matches('[').trim_end_matches(']');
        let ip = if bare.eq_ignore_ascii_case("localhost") {
            IpAddr::from([127, 0, 0, 1])
        } else {
            bare.parse().map_err(|_| CliError::Invalid {
                flag: "dapr-listen-addresses",
                value: list.to_owned(),
                why: format!("{part:?} is not an IP address"),
            })?
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// Parses a Kubernetes-style quantity (`4Mi`, `4M`, `1.5Gi`, `4194304`) into bytes, as daprd does for
/// `--max-body-size`. Fractional results are rounded up; negative means "no limit" (`usize::MAX`).
pub fn parse_quantity(value: &str) -> Result<usize, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(split);
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use Ki, Mi, Gi, k, M, G or none)"
            ));
        }
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    if !n.is_finite() {
        return Err("not a finite number".into());
    }
    if n < 0.0 {
        return Ok(usize::MAX);
    }
    let bytes = (n * multiplier).ceil();
    if bytes >= usize::MAX as f64 {
        Ok(usize::MAX)
    } else {
        // In range and non-negative: checked just above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(bytes as usize)
    }
}

/// Rewrites daprd's Go-style `-flag` arguments to `--flag` so clap understands them. Short flags
/// (`-f`, `-h`, `-V`) and values after a flag are left alone; `--` ends the rewriting.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut done = false;
    for arg in args {
        if done {
            out.push(arg);
            continue;
        }
        match arg.to_str() {
            Some("--") => {
                done = true;
                out.push(arg);
            }
            Some(s)
                if s.starts_with('-')
                    && !s.starts_with("--")
                    && s.len() > 2
                    && s.as_bytes().get(1).is_some_and(u8::is_ascii_alphabetic)
                    && s.as_bytes()
                        .get(2)
                        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'-') =>
            {
                out.push(OsString::from(format!("-{s}")));
            }
            _ => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let argv = std::iter::once("sidecar")
            .chain(args.iter().copied())
            .map(OsString::from);
        Cli::try_parse_from(normalize_args(argv))
    }

    fn resolve(args: &[&str]) -> Result<DaprdConfig, CliError> {
        parse(args).unwrap().daprd.resolve(|_| None)
    }

    #[test]
    fn defaults_match_daprd() {
        let cfg = resolve(&["--app-id", "task-api"]).unwrap();
        assert_eq!(cfg.app_id, "task-api");
        assert_eq!(cfg.dapr_http_port, 3500);
        assert_eq!(cfg.app_channel_address, "127.0.0.1");
        assert_eq!(cfg.max_body_size, 4 << 20);
        assert_eq!(cfg.app_port, None);
        assert_eq!(cfg.log_level, LogLevel::Info);
        assert!(cfg.listen_addresses.is_empty());
        assert!(cfg.warnings.is_empty());
    }

    #[test]
    fn app_id_is_required_without_subcommand() {
        assert!(parse(&["--app-port", "8080"]).is_err());
    }

    #[test]
    fn run_subcommand_takes_a_file() {
        let cli = parse(&["run", "-f", "dapr.yaml"]).unwrap();
        match cli.command {
            Some(Command::Run(run)) => assert_eq!(run.file, PathBuf::from("dapr.yaml")),
            None => panic!("expected run"),
        }
    }

    #[test]
    fn go_style_single_dash_flags_are_accepted() {
        let cfg = resolve(&["-app-id", "a", "-app-port", "8080", "-resources-path", "x"]).unwrap();
        assert_eq!(cfg.app_port, Some(8080));
        assert_eq!(cfg.resources_paths, vec![PathBuf::from("x")]);
    }

    #[test]
    fn resources_paths_repeat_and_merge_the_deprecated_flag() {
        let cfg = resolve(&[
            "--app-id",
            "a",
            "--resources-path",
            "r1",
            "--resources-path",
            "r2",
            "--components-path",
            "c",
        ])
        .unwrap();
        let want: Vec<PathBuf> = ["r1", "r2", "c"].iter().map(PathBuf::from).collect();
        assert_eq!(cfg.resources_paths, want);
        assert!(cfg.warnings[0].contains("deprecated"));
    }

    #[test]
    fn tokens_come_from_the_environment() {
        let cli = parse(&["--app-id", "a"]).unwrap();
        let cfg = cli
            .daprd
            .resolve(|k| match k {
                "DAPR_API_TOKEN" => Some("t1".into()),
                "APP_API_TOKEN" => Some("t2".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(cfg.api_token.as_deref(), Some("t1"));
        assert_eq!(cfg.app_api_token.as_deref(), Some("t2"));
    }

    #[test]
    fn log_level_is_validated() {
        assert_eq!(
            resolve(&["--app-id", "a", "--log-level", "debug"])
                .unwrap()
                .log_level,
            LogLevel::Debug
        );
        assert!(parse(&["--app-id", "a", "--log-level", "verbose"]).is_err());
    }

    #[test]
    fn listen_addresses_parse() {
        let cfg = resolve(&[
            "--app-id",
            "a",
            "--dapr-listen-addresses",
            "127.0.0.1,[::1]",
        ])
        .unwrap();
        assert_eq!(
            cfg.listen_addresses,
            vec![IpAddr::from([127, 0, 0, 1]), "::1".parse().unwrap()]
        );
        let err = resolve(&["--app-id", "a", "--dapr-listen-addresses", "nope"]).unwrap_err();
        assert!(err.to_string().contains("dapr-listen-addresses"), "{err}");
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("4Mi"), Ok(4 << 20));
        assert_eq!(parse_quantity("4M"), Ok(4_000_000));
        assert_eq!(parse_quantity("1Ki"), Ok(1024));
        assert_eq!(parse_quantity("0.5Ki"), Ok(512));
        assert_eq!(parse_quantity("100"), Ok(100));
        assert_eq!(parse_quantity("-1"), Ok(usize::MAX));
        assert!(parse_quantity("4MB").is_err());
        assert!(parse_quantity("lots").is_err());
        let err = resolve(&["--app-id", "a", "--max-body-size", "4XB"]).unwrap_err();
        assert!(err.to_string().contains("max-body-size"), "{err}");
    }

    #[test]
    fn legacy_request_size_is_megabytes() {
        let cfg = resolve(&["--app-id", "a", "--dapr-http-max-request-size", "8"]).unwrap();
        assert_eq!(cfg.max_body_size, 8 << 20);
    }

    #[test]
    fn unsupported_flags_at_their_default_are_accepted() {
        let cfg = resolve(&[
            "--app-id",
            "a",
            "--dapr-grpc-port",
            "50001",
            "--app-protocol",
            "http",
            "--mode",
            "standalone",
            "--metrics-port",
            "9091",
            "--enable-metrics=false",
            "--log-as-json",
        ])
        .unwrap();
        assert!(cfg.log_as_json);
        assert!(cfg.warnings.iter().any(|w| w.contains("metrics-port")));
    }

    #[test]
    fn unsupported_flags_that_change_behaviour_fail_naming_the_flag() {
        for (args, flag) in [
            (&["--dapr-grpc-port", "50002"][..], "--dapr-grpc-port"),
            (&["--app-protocol", "grpc"][..], "--app-protocol"),
            (&["--config", "./config.yaml"][..], "--config"),
            (&["--mode", "kubernetes"][..], "--mode"),
            (
                &["--enable-app-health-check"][..],
                "--enable-app-health-check",
            ),
            (
                &["--unix-domain-socket", "/tmp"][..],
                "--unix-domain-socket",
            ),
        ] {
            let mut all = vec!["--app-id", "a"];
            all.extend_from_slice(args);
            let err = resolve(&all).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(flag) && text.contains("not supported"),
                "{text}"
            );
        }
    }

    #[test]
    fn unknown_flags_are_rejected_by_clap() {
        let err = parse(&["--app-id", "a", "--no-such-flag"]).unwrap_err();
        assert!(err.to_string().contains("--no-such-flag"));
    }
}
