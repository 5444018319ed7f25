//! The run's console (crate `console`) wired into a multi-app run: where it listens (flags over
//! the run file's `console` key, 127.0.0.1:9999 by default, a token required off loopback), what
//! it is told (the run's tap, each instance as it starts, the apps' output lines, audit-logger's
//! admin token, email-worker's mail folder), and where the run's traces go when the run file
//! names no OTLP endpoint: the apps get `OTEL_EXPORTER_OTLP_ENDPOINT` and the sidecars trace
//! (every span sampled) to the console's `/v1/traces`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use console::{AppStatus, AppsSource, Console, DeadLetterUpstream, LogStream, Settings};
use sidecar_core::Runtime;
use sidecar_core::inspect::SidecarInspector;
use sidecar_core::otel::TracingOptions;
use tokio::sync::watch;

use super::process::{LineSink, describe};
use crate::cli::RunArgs;
use crate::runfile::{AppPlan, ConsoleKeys, RunPlan};

/// The console's port unless the flag or the run file says otherwise.
pub const DEFAULT_PORT: u16 = 9999;

/// Where and how the console is served.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    pub address: IpAddr,
    pub port: u16,
    /// The port was asked for (flag or run file): if it is taken the run fails instead of
    /// moving to a free one.
    pub port_chosen: bool,
    pub token: Option<String>,
}

impl std::fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("address", &self.address)
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Why the console settings are refused.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleConfigError {
    #[error(
        "the console would listen on {0}, which is not loopback: give it a token (--console-token or SIDECAR_CONSOLE_TOKEN)"
    )]
    TokenRequired(IpAddr),
    #[error("the console token is empty")]
    EmptyToken,
}

/// Flags over run-file keys; `None` when the console is off.
pub fn config(
    args: &RunArgs,
    keys: &ConsoleKeys,
) -> Result<Option<ConsoleConfig>, ConsoleConfigError> {
    if args.no_console || keys.enabled == Some(false) {
        return Ok(None);
    }
    let address = args
        .console_address
        .or(keys.address)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let chosen = args.console_port.or(keys.port);
    let token = args.console_token.clone();
    if token.as_deref() == Some("") {
        return Err(ConsoleConfigError::EmptyToken);
    }
    if !address.is_loopback() && token.is_none() {
        return Err(ConsoleConfigError::TokenRequired(address));
    }
    Ok(Some(ConsoleConfig {
        address,
        port: chosen.unwrap_or(DEFAULT_PORT),
        port_chosen: chosen.is_some(),
        token,
    }))
}

/// A console being served for a run.
#[derive(Debug)]
pub struct Served {
    pub console: Console,
    pub apps: Arc<RunnerApps>,
    /// `http://127.0.0.1:<port>`: the OTLP endpoint given to the apps.
    pub otlp_endpoint: String,
    /// The address it listens on, for the printed URL.
    pub local_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Binds and serves the console; installs its observer on the run's tap.
pub async fn start(
    config: &ConsoleConfig,
    plan: &RunPlan,
    runtime: &Arc<Runtime>,
) -> std::io::Result<Served> {
    let listener = match tokio::net::TcpListener::bind((config.address, config.port)).await {
        Ok(l) => l,
        // Several runs at once (tests, two checkouts): the default port moves, a chosen one fails.
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && !config.port_chosen => {
            tracing::warn!(
                port = config.port,
                "console port in use; the console listens on a free port"
            );
            tokio::net::TcpListener::bind((config.address, 0)).await?
        }
        Err(e) => return Err(e),
    };
    let local_addr = listener.local_addr()?;
    let apps = Arc::new(RunnerApps::default());
    let settings = Settings {
        token: config.token.clone(),
        dead_letters: dead_letter_upstream(plan),
        mail_dir: mail_dir(plan),
        ..Settings::default()
    };
    let console = Console::new(settings, apps.clone(), Some(runtime.clone()));
    runtime.tap().set(console.observer());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let serving = console.clone();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(error) = serving.serve(listener, shutdown).await {
            tracing::error!(%error, "console stopped");
        }
    });
    let port = local_addr.port();
    Ok(Served {
        console,
        apps,
        otlp_endpoint: format!("http://127.0.0.1:{port}"),
        local_addr,
        stop: Some(stop),
        task: Some(task),
    })
}

impl Served {
    /// The page's URL (the token is not printed: it is a secret).
    pub fn url(&self) -> String {
        let host = match self.local_addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        format!("http://{host}:{}/", self.local_addr.port())
    }

    /// Points an app at the console's trace receiver unless the run file already traces it.
    pub fn route_traces(
        &self,
        app: &AppPlan,
        env: &mut std::collections::BTreeMap<String, String>,
    ) {
        let endpoint_set = app.env.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT")
            || app.env.contains_key("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            || std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        if !endpoint_set {
            env.insert(
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                self.otlp_endpoint.clone(),
            );
        }
    }

    /// The sidecar's tracing: the run file's, else every span to the console.
    pub fn sidecar_tracing(&self, app: &AppPlan) -> Option<TracingOptions> {
        app.tracing.clone().or_else(|| {
            Some(TracingOptions {
                sampling_rate: 1.0,
                otlp_traces_url: Some(format!("{}/v1/traces", self.otlp_endpoint)),
                zipkin_url: None,
            })
        })
    }

    /// The app's output lines into the console's log view.
    pub fn line_sink(&self, app_id: &str, instance: &str) -> LineSink {
        let console = self.console.clone();
        let (app, instance) = (app_id.to_owned(), instance.to_owned());
        LineSink(Arc::new(move |stderr, line| {
            let stream = if stderr {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            };
            console.log(&instance, &app, stream, line);
        }))
    }

    /// Stops serving and removes the observer.
    pub async fn stop(mut self, runtime: &Runtime) {
        runtime.tap().clear();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // An open event stream would hold a graceful shutdown forever.
            if tokio::time::timeout(std::time::Duration::from_secs(2), task)
                .await
                .is_err()
            {
                tracing::debug!("console connections cut at shutdown");
            }
        }
    }
}

/// The app whose env has `AUDIT_ADMIN_TOKEN`: audit-logger, reached through its own sidecar.
fn dead_letter_upstream(plan: &RunPlan) -> Option<DeadLetterUpstream> {
    plan.apps.iter().find_map(|app| {
        let token = app.env.get("AUDIT_ADMIN_TOKEN").filter(|t| !t.is_empty())?;
        Some(DeadLetterUpstream {
            app_id: app.app_id.clone(),
            admin_token: token.clone(),
            dapr_api_token: std::env::var("DAPR_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        })
    })
}

/// email-worker's file-transport folder: `MAIL_DIR` of the app that sets it, relative to its
/// `appDirPath`.
fn mail_dir(plan: &RunPlan) -> Option<PathBuf> {
    plan.apps.iter().find_map(|app| {
        let dir = app.env.get("MAIL_DIR").filter(|d| !d.is_empty())?;
        Some(app.app_dir.join(dir))
    })
}

/// The runner's instances, as the console asks for them.
#[derive(Debug, Default)]
pub struct RunnerApps {
    instances: Mutex<Vec<Tracked>>,
}

#[derive(Debug)]
struct Tracked {
    app_id: String,
    instance: String,
    app_port: Option<u16>,
    http_port: u16,
    pid: Option<u32>,
    inspector: SidecarInspector,
    status: Option<watch::Receiver<Option<std::process::ExitStatus>>>,
}

/// One started instance, for [`RunnerApps::add`].
#[derive(Debug)]
pub struct Started {
    pub app_id: String,
    pub instance: String,
    pub app_port: Option<u16>,
    pub http_port: u16,
    pub pid: Option<u32>,
    pub inspector: SidecarInspector,
    pub status: Option<watch::Receiver<Option<std::process::ExitStatus>>>,
}

impl RunnerApps {
    pub fn add(&self, s: Started) {
        self.instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Tracked {
                app_id: s.app_id,
                instance: s.instance,
                app_port: s.app_port,
                http_port: s.http_port,
                pid: s.pid,
                inspector: s.inspector,
                status: s.status,
            });
    }
}

impl AppsSource for RunnerApps {
    fn apps(&self) -> Vec<AppStatus> {
        let instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        instances
            .iter()
            .map(|t| AppStatus {
                app_id: t.app_id.clone(),
                instance: t.instance.clone(),
                pid: t.pid,
                exit_status: t.status.as_ref().and_then(|s| *s.borrow()).map(describe),
                app_port: t.app_port,
                http_port: t.http_port,
                sidecar: Some(t.inspector.view()),
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["sidecar", "run", "-f", "dapr.yaml"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            Some(crate::cli::Command::Run(args)) => args,
            None => panic!("not a run command"),
        }
    }

    #[test]
    fn flags_win_over_the_run_file_and_off_loopback_needs_a_token() {
        let keys = ConsoleKeys {
            port: Some(9100),
            enabled: None,
            address: None,
        };
        let c = config(&args(&[]), &ConsoleKeys::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.address.to_string(), c.port, c.port_chosen),
            ("127.0.0.1".into(), DEFAULT_PORT, false)
        );
        let c = config(&args(&[]), &keys).unwrap().unwrap();
        assert_eq!((c.port, c.port_chosen), (9100, true));
        let c = config(&args(&["--console-port", "9200"]), &keys)
            .unwrap()
            .unwrap();
        assert_eq!(c.port, 9200);
        assert!(config(&args(&["--no-console"]), &keys).unwrap().is_none());
        let off = ConsoleKeys {
            enabled: Some(false),
            ..keys.clone()
        };
        assert!(config(&args(&[]), &off).unwrap().is_none());
        let e = config(&args(&["--console-address", "0.0.0.0"]), &keys).unwrap_err();
        assert!(e.to_string().contains("SIDECAR_CONSOLE_TOKEN"), "{e}");
        let c = config(
            &args(&["--console-address", "0.0.0.0", "--console-token", "t0k"]),
            &keys,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.token.as_deref(), Some("t0k"));
        assert!(
            !format!("{c:?}").contains("t0k"),
            "the token stays out of Debug"
        );
    }
}
