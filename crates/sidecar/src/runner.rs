//! Running sidecars: one for `sidecar --app-id ...` ([`run_single`]), or one per app of a run file
//! together with the apps themselves ([`run_plan`], the equivalent of `dapr run -f`).
//!
//! A multi-app run hosts every sidecar in this process on one shared [`Runtime`], so in-memory
//! pub/sub and state connect the apps (resources combined as described in [`resources`]). For each
//! app, in file order: its sidecar starts (API bound; the app channel is awaited in the background,
//! as daprd does), then the app's `command` starts in `appDirPath` with the environment the Dapr CLI
//! gives: ours, plus `APP_ID`, `APP_PORT`, `DAPR_HTTP_PORT`, `DAPR_GRPC_PORT`, `DAPR_METRICS_PORT`,
//! `APP_PROTOCOL=http`, `APP_CHANNEL_ADDRESS` (when not 127.0.0.1), then the file's `env`.
//! `DAPR_API_TOKEN`/`APP_API_TOKEN` for the sidecars come from our environment only, as daprd's do.
//! No gRPC API or metrics endpoint is served; their ports are reserved only so apps that read the
//! variables get a valid number.
//!
//! An app scaled with `--scale APP=N` starts as N instances right after one another, each as
//! above with ports of its own ([`crate::scale`]); its output and log lines name the instance
//! (`email-worker#2`). Once everything has started, a table of every instance with its ports and
//! process id goes to stdout ([`table`]).
//!
//! An app that exits on its own is reported with its exit status and the run goes on, as with the
//! Dapr CLI: its sidecar and the other apps keep running until Ctrl-C/SIGTERM. Then every app's
//! process group gets SIGTERM, a grace period, then SIGKILL (at once on a second Ctrl-C); then the
//! sidecars stop. The run exits non-zero if any app had exited on its own with a failure status.

pub mod console;
pub mod process;
pub mod resources;
pub mod table;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::cli::DaprdConfig;
use crate::runfile::{AppPlan, RunPlan};
use crate::scale::{self, Instance};
use process::{AppCommand, AppProcess, Exited, describe};
use sidecar_core::{
    ResourceError, Runtime, SidecarHandle, SidecarOptions, StartError, start_sidecar,
};

/// Why a run could not start (once started, problems are logged and the run goes on).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Resources(Box<resources::CombineError>),
    #[error("cannot load resources: {0}")]
    Resource(Box<ResourceError>),
    #[error("app {app_id:?}: cannot start the sidecar: {reason}")]
    Sidecar {
        app_id: String,
        reason: String,
        #[source]
        source: Box<StartError>,
    },
    #[error("app {app_id:?}: cannot start {program:?} in {dir}: {source}")]
    Spawn {
        app_id: String,
        program: String,
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot serve the console on {address}: {source}")]
    Console {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// How a run ended.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Apps that exited before the run was stopped.
    pub exited_on_their_own: Vec<Exited>,
}

impl RunReport {
    /// True if an app exited on its own with a failure status.
    pub fn app_failed(&self) -> bool {
        self.exited_on_their_own.iter().any(|e| !e.status.success())
    }
}

/// Runs one sidecar until Ctrl-C or SIGTERM.
pub async fn run_single(cfg: DaprdConfig) -> Result<(), RunnerError> {
    let mut stop = StopSignal::install()?;
    let resources = sidecar_core::load_resources(&cfg.resources_paths).map_err(resource_error)?;
    let runtime = Runtime::new(resources, &crate::components()).map_err(resource_error)?;
    let opts = SidecarOptions {
        app_id: cfg.app_id.clone(),
        app_port: cfg.app_port,
        app_channel_address: cfg.app_channel_address.clone(),
        dapr_http_port: cfg.dapr_http_port,
        listen_addresses: cfg.listen_addresses.clone(),
        api_token: cfg.api_token.clone(),
        app_api_token: cfg.app_api_token.clone(),
        max_body_size: cfg.max_body_size,
        app_health: cfg.app_health.clone(),
        access_control: cfg.access_control.clone(),
        tracing: cfg.tracing.clone(),
    };
    let handle = start(&runtime, opts, &cfg.app_id).await?;
    tracing::info!(app_id = %cfg.app_id, http_port = handle.local_addr().port(), "sidecar running");
    let signal = stop.recv().await;
    tracing::info!(signal, "stopping sidecar");
    handle.shutdown().await;
    runtime.shutdown().await;
    Ok(())
}

/// Runs every app of `plan` with its sidecar until Ctrl-C or SIGTERM, with the console when
/// `console_config` is given.
pub async fn run_plan(
    plan: RunPlan,
    grace: Duration,
    console_config: Option<console::ConsoleConfig>,
) -> Result<RunReport, RunnerError> {
    let mut stop = StopSignal::install()?;
    let app_paths: Vec<_> = plan
        .apps
        .iter()
        .map(|a| (a.app_id.clone(), a.resources_paths.clone()))
        .collect();
    let components = crate::components();
    let combined = resources::combine(&app_paths, &components)
        .map_err(|e| RunnerError::Resources(Box::new(e)))?;
    let runtime = Runtime::new(combined, &components).map_err(resource_error)?;
    let (exits_tx, mut exits) = mpsc::unbounded_channel();

    let mut running = Running::default();
    if let Some(config) = &console_config {
        let served = console::start(config, &plan, &runtime)
            .await
            .map_err(|source| RunnerError::Console {
                address: format!("{}:{}", config.address, config.port),
                source,
            })?;
        running.console = Some(served);
    }
    for app in &plan.apps {
        if let Err(e) = running.start_app(&runtime, app, exits_tx.clone()).await {
            running.stop(grace, &mut stop).await;
            running.stop_console(&runtime).await;
            runtime.shutdown().await;
            return Err(e);
        }
    }
    table::print(
        &running.table,
        running.console.as_ref().map(console::Served::url),
    );
    tracing::info!(apps = plan.apps.len(), instances = running.table.len(), file = %plan.file.display(), "all apps started; Ctrl-C stops the run");

    let mut report = RunReport::default();
    let signal = loop {
        tokio::select! {
            signal = stop.recv() => break signal,
            Some(exited) = exits.recv() => {
                let status = describe(exited.status);
                if exited.status.success() {
                    tracing::info!(app_id = %exited.app_id, %status, "app exited on its own; its sidecar and the other apps keep running");
                } else {
                    tracing::error!(app_id = %exited.app_id, %status, "app exited on its own with a failure; its sidecar and the other apps keep running");
                }
                report.exited_on_their_own.push(exited);
            }
        }
    };
    tracing::info!(signal, "stopping apps and sidecars");
    running.stop(grace, &mut stop).await;
    running.stop_console(&runtime).await;
    runtime.shutdown().await;
    Ok(report)
}

#[derive(Default)]
struct Running {
    processes: Vec<AppProcess>,
    sidecars: Vec<SidecarHandle>,
    /// One row per instance, printed once all have started.
    table: Vec<table::Row>,
    console: Option<console::Served>,
}

impl Running {
    async fn stop_console(&mut self, runtime: &Runtime) {
        if let Some(served) = self.console.take() {
            served.stop(runtime).await;
        }
    }

    /// Starts every instance of `app` (one unless `--scale` said more), in index order.
    async fn start_app(
        &mut self,
        runtime: &Arc<Runtime>,
        app: &AppPlan,
        exits: mpsc::UnboundedSender<Exited>,
    ) -> Result<(), RunnerError> {
        for instance in scale::instances(app) {
            self.start_instance(runtime, app, &instance, exits.clone())
                .await?;
        }
        Ok(())
    }

    async fn start_instance(
        &mut self,
        runtime: &Arc<Runtime>,
        app: &AppPlan,
        instance: &Instance,
        exits: mpsc::UnboundedSender<Exited>,
    ) -> Result<(), RunnerError> {
        let token = |name: &str| std::env::var(name).ok().filter(|t| !t.is_empty());
        let ports = scale::ports(app, instance.index, free_port);
        let label = &instance.label;
        let opts = SidecarOptions {
            app_id: app.app_id.clone(),
            app_port: ports.app_port,
            app_channel_address: app.app_channel_address.clone(),
            dapr_http_port: ports.dapr_http_port,
            listen_addresses: app.listen_addresses.clone(),
            api_token: token("DAPR_API_TOKEN"),
            app_api_token: token("APP_API_TOKEN"),
            max_body_size: app.max_body_size,
            app_health: app.app_health.clone(),
            access_control: app.access_control.clone(),
            tracing: match &self.console {
                Some(served) => served.sidecar_tracing(app),
                None => app.tracing.clone(),
            },
        };
        let handle = start(runtime, opts, label).await?;
        let http_port = handle.local_addr().port();
        let inspector = handle.inspector();
        self.sidecars.push(handle);
        if let Some(served) = &self.console {
            served.console.name_sidecar(http_port, label);
        }
        let (grpc_port, metrics_port) = (ports.dapr_grpc_port, ports.metrics_port);
        tracing::info!(app_id = %label, http_port, grpc_port, "started sidecar");
        let mut row = table::Row {
            instance: label.clone(),
            app_port: ports.app_port,
            dapr_http_port: http_port,
            dapr_grpc_port: grpc_port,
            metrics_port,
            pid: None,
        };

        let mut started = console::Started {
            app_id: app.app_id.clone(),
            instance: label.clone(),
            app_port: ports.app_port,
            http_port,
            pid: None,
            inspector,
            status: None,
        };
        if app.command.is_empty() {
            tracing::warn!(app_id = %label, "no application command; only the sidecar runs");
            self.table.push(row);
            if let Some(served) = &self.console {
                served.apps.add(started);
            }
            return Ok(());
        }
        let mut env = BTreeMap::from([
            ("APP_ID".to_owned(), app.app_id.clone()),
            ("DAPR_HTTP_PORT".to_owned(), http_port.to_string()),
            ("DAPR_GRPC_PORT".to_owned(), grpc_port.to_string()),
            ("DAPR_METRICS_PORT".to_owned(), metrics_port.to_string()),
            ("APP_PROTOCOL".to_owned(), "http".to_owned()),
        ]);
        if let Some(port) = ports.app_port {
            env.insert("APP_PORT".into(), port.to_string());
        }
        if app.app_channel_address != "127.0.0.1" {
            env.insert(
                "APP_CHANNEL_ADDRESS".into(),
                app.app_channel_address.clone(),
            );
        }
        if let Some(served) = &self.console {
            served.route_traces(app, &mut env);
        }
        env.extend(scale::instance_env(app, instance.index, &ports, http_port));
        let spec = AppCommand {
            app_id: label.clone(),
            command: app.command.clone(),
            cwd: app.app_dir.clone(),
            env,
            lines: self
                .console
                .as_ref()
                .map(|served| served.line_sink(&app.app_id, label)),
        };
        let process = AppProcess::spawn(&spec, exits).map_err(|source| RunnerError::Spawn {
            app_id: label.clone(),
            program: app.command.first().cloned().unwrap_or_default(),
            dir: app.app_dir.display().to_string(),
            source,
        })?;
        tracing::info!(app_id = %label, pid = process.pid(), "started app");
        row.pid = Some(process.pid());
        self.table.push(row);
        if let Some(served) = &self.console {
            started.pid = Some(process.pid());
            started.status = Some(process.status_receiver());
            served.apps.add(started);
        }
        self.processes.push(process);
        Ok(())
    }

    /// Stops all apps (concurrently, each with its grace period), then all sidecars.
    /// A second Ctrl-C/SIGTERM while waiting skips the rest of the grace period (SIGKILL now).
    async fn stop(&mut self, grace: Duration, stop: &mut StopSignal) {
        let groups: Vec<u32> = self.processes.iter().map(AppProcess::pid).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for mut p in self.processes.drain(..) {
            tasks.spawn(async move {
                let status = p.terminate(grace).await;
                (p.app_id().to_owned(), status)
            });
        }
        let mut forced = false;
        loop {
            let done = tokio::select! {
                done = tasks.join_next() => done,
                signal = stop.recv(), if !forced => {
                    tracing::warn!(signal, "second signal: killing the apps now");
                    forced = true;
                    groups.iter().for_each(|g| process::kill_group(*g));
                    continue;
                }
            };
            let Some(done) = done else { break };
            if let Ok((app_id, status)) = done {
                let status = status.map_or_else(|| "unknown status".to_owned(), describe);
                tracing::info!(%app_id, %status, "app stopped");
            }
        }
        let mut sidecars = tokio::task::JoinSet::new();
        for s in self.sidecars.drain(..) {
            sidecars.spawn(s.shutdown());
        }
        while sidecars.join_next().await.is_some() {}
    }
}

async fn start(
    runtime: &Arc<Runtime>,
    opts: SidecarOptions,
    label: &str,
) -> Result<SidecarHandle, RunnerError> {
    let app_id = label.to_owned();
    let port = opts.dapr_http_port;
    start_sidecar(runtime.clone(), opts)
        .await
        .map_err(|source| {
            let reason = match &source {
                StartError::Bind { source: io, .. }
                    if io.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    format!("dapr HTTP port {port} is already in use")
                }
                other => other.to_string(),
            };
            RunnerError::Sidecar {
                app_id,
                reason,
                source: Box::new(source),
            }
        })
}

fn resource_error(e: ResourceError) -> RunnerError {
    RunnerError::Resource(Box::new(e))
}

/// A port that was free a moment ago, for an extra instance's app (which binds it) and its
/// announced ports; 0 (the system's choice) only when the machine has no free port.
fn free_port() -> u16 {
    sidecar_core::ports::free_loopback_port().unwrap_or(0)
}

/// Ctrl-C (SIGINT) or SIGTERM, installed before anything starts so an early signal is not lost.
struct StopSignal {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn install() -> Result<Self, RunnerError> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).map_err(RunnerError::Signals)?,
            terminate: signal(SignalKind::terminate()).map_err(RunnerError::Signals)?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
