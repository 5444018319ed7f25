//! daprd flags this sidecar recognises without implementing them: accepted with a warning when they
//! change nothing an app can observe (or carry daprd's default), an error naming the flag otherwise.

use super::{CliError, DaprdArgs};

impl DaprdArgs {
    pub(super) fn check_unsupported(&self, warnings: &mut Vec<String>) -> Result<(), CliError> {
        let ignored: [(&str, bool); 15] = [
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
        ];
        for (flag, given) in ignored {
            if given {
                warnings.push(format!(
                    "--{flag} has no effect on this sidecar and is ignored"
                ));
            }
        }
        if self.enable_app_health_check != Some(true) {
            for (flag, given) in [
                ("app-health-check-path", &self.app_health_check_path),
                ("app-health-probe-interval", &self.app_health_probe_interval),
                ("app-health-probe-timeout", &self.app_health_probe_timeout),
                ("app-health-threshold", &self.app_health_threshold),
            ] {
                if given.is_some() {
                    warnings.push(format!(
                        "--{flag} has no effect without --enable-app-health-check"
                    ));
                }
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
