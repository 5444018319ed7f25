//! The console of a local multi-app run (`sidecar run -f`): an HTTP API and a page, served by the
//! runner on loopback, that show the running system as it works: apps with their health,
//! subscriptions, components and breakers; every event as it is published, with each delivery
//! attempt to each subscriber; dead letters (replayed through audit-logger's API); state keys;
//! the emails email-worker wrote; the traces the run exports; the apps' logs.
//!
//! The runner builds a [`Console`], installs its [`Console::observer`] on the run's
//! [`sidecar_core::Runtime`] tap, feeds it the apps' output lines ([`Console::log`]) and serves
//! [`Console::router`]. Every store is a bounded ring ([`Limits`]); the live stream is a
//! broadcast with a bounded backlog per viewer, so a slow viewer loses lines (and is told how
//! many) instead of slowing deliveries.
//!
//! Modules: [`limits`] (every bound), [`events`] (the tap's records into the event ring),
//! [`hub`] (the live stream's fan-out), [`logs`], [`traces`] (OTLP/HTTP receiver and store),
//! [`apps`] (what the runner reports of its instances), [`dead_letters`], [`emails`],
//! [`state`], [`guard`] (token, CSRF header, security headers), [`assets`] and [`router`].

pub mod apps;
pub mod assets;
pub mod dead_letters;
pub mod emails;
pub mod events;
pub mod guard;
pub mod hub;
pub mod limits;
pub mod logs;
pub mod router;
pub mod state;
pub mod traces;

use std::path::PathBuf;
use std::sync::Arc;

pub use apps::{AppStatus, AppsSource};
pub use dead_letters::DeadLetterUpstream;
pub use limits::Limits;
pub use logs::LogStream;

/// What the console is given by the runner.
#[derive(Clone, Default)]
pub struct Settings {
    /// Required on every request (`Authorization: Bearer` or `?token=`) when set; the runner sets
    /// one whenever the console listens on a non-loopback address.
    pub token: Option<String>,
    /// audit-logger's API, reached through its sidecar.
    pub dead_letters: Option<DeadLetterUpstream>,
    /// email-worker's file-transport folder in this run.
    pub mail_dir: Option<PathBuf>,
    pub limits: Limits,
}

// Written by hand so that the token never reaches a log line.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("dead_letters", &self.dead_letters)
            .field("mail_dir", &self.mail_dir)
            .field("limits", &self.limits)
            .finish()
    }
}

/// The console of one run: its stores and settings. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Console {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) settings: Settings,
    pub(crate) hub: hub::Hub,
    pub(crate) events: events::EventStore,
    pub(crate) logs: logs::LogStore,
    pub(crate) traces: traces::TraceStore,
    pub(crate) apps: Arc<dyn AppsSource>,
    pub(crate) runtime: Option<Arc<sidecar_core::Runtime>>,
    pub(crate) client: reqwest::Client,
}

impl Console {
    /// A console over `apps` (and the run's `runtime`, for the state view). Spawns the task that
    /// files the tap's records, so it must be called inside a Tokio runtime.
    pub fn new(
        settings: Settings,
        apps: Arc<dyn AppsSource>,
        runtime: Option<Arc<sidecar_core::Runtime>>,
    ) -> Console {
        let limits = settings.limits.clone();
        let hub = hub::Hub::new(limits.stream_backlog);
        let events = events::EventStore::start(&limits, hub.clone());
        let logs = logs::LogStore::new(&limits, hub.clone());
        let traces = traces::TraceStore::new(limits.traces, limits.spans_per_trace);
        Console {
            inner: Arc::new(Inner {
                settings,
                hub,
                events,
                logs,
                traces,
                apps,
                runtime,
                client: reqwest::Client::builder()
                    .timeout(limits.upstream_timeout)
                    .build()
                    .unwrap_or_default(),
            }),
        }
    }

    /// The observer to install on the run's tap (`runtime.tap().set(...)`).
    pub fn observer(&self) -> Arc<dyn sidecar_core::observe::Observer> {
        self.inner.events.observer()
    }

    /// Names a sidecar by its Dapr HTTP port, so deliveries show the instance (`email-worker#2`).
    pub fn name_sidecar(&self, port: u16, instance: &str) {
        self.inner.events.name_sidecar(port, instance);
    }

    /// One line of an app's output.
    pub fn log(&self, instance: &str, app: &str, stream: LogStream, line: &str) {
        self.inner.logs.push(instance, app, stream, line);
    }

    /// The console's routes (page, API, OTLP receiver) behind its guard.
    pub fn router(&self) -> axum::Router {
        router::router(self.clone())
    }

    /// Serves the console on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
