//! One sidecar: its options, its HTTP server, its startup sequence and its handle.

use crate::delivery::ActiveSubscription;
use crate::runtime::Runtime;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// daprd's default `--max-body-size` (4 MiB).
pub const DEFAULT_MAX_BODY_SIZE: usize = 4 * 1024 * 1024;

/// How one sidecar runs.
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    pub app_id: String,
    /// App port; `None` = no app channel (no subscriptions, no invocation of this app).
    pub app_port: Option<u16>,
    /// Host the app listens on (`127.0.0.1` by default).
    pub app_channel_address: String,
    /// Dapr HTTP API port; 0 = random.
    pub dapr_http_port: u16,
    /// Addresses the API listens on; empty = all interfaces.
    pub listen_addresses: Vec<IpAddr>,
    /// `DAPR_API_TOKEN`: required on every API call except the healthz endpoints.
    pub api_token: Option<String>,
    /// `APP_API_TOKEN`: sent to the app as `dapr-api-token`.
    pub app_api_token: Option<String>,
    /// Largest request body accepted (413 beyond).
    pub max_body_size: usize,
    /// App health checks (`--enable-app-health-check`); `None` = off, the app counts as healthy.
    pub app_health: Option<crate::app_health::AppHealthOptions>,
}

impl SidecarOptions {
    /// Defaults for `app_id`: no app port, random API port on 127.0.0.1, no tokens, 4 MiB bodies.
    pub fn new(app_id: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            app_port: None,
            app_channel_address: "127.0.0.1".into(),
            dapr_http_port: 0,
            listen_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            api_token: None,
            app_api_token: None,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            app_health: None,
        }
    }
}

/// The sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid sidecar options: {0}")]
    Options(String),
    #[error("cannot build the app channel client: {0}")]
    Client(String),
}

static NEXT_SIDECAR_ID: AtomicU64 = AtomicU64::new(1);

/// State shared by the handlers and tasks of one sidecar.
#[derive(Debug)]
pub struct SidecarState {
    pub runtime: Arc<Runtime>,
    pub opts: SidecarOptions,
    pub(crate) id: u64,
    /// The app port accepted a connection (the app channel exists).
    pub(crate) app_channel_up: AtomicBool,
    /// Startup finished: app channel up (if any) and subscriptions registered.
    pub(crate) ready: tokio::sync::watch::Sender<bool>,
    /// Whether the app may be given work: always with health checks off, otherwise as the
    /// probes last decided (see [`crate::app_health`]).
    pub(crate) app_healthy: tokio::sync::watch::Sender<bool>,
    pub(crate) subscriptions: RwLock<Vec<ActiveSubscription>>,
    pub(crate) extended: Mutex<BTreeMap<String, String>>,
    /// Client for the app channel (deliveries, `/dapr/subscribe`, invocation).
    pub(crate) client: reqwest::Client,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

impl SidecarState {
    pub fn app_id(&self) -> &str {
        &self.opts.app_id
    }

    /// Base URL of the app channel, if there is one.
    pub fn app_base_url(&self) -> Option<String> {
        self.opts
            .app_port
            .map(|p| format!("http://{}:{p}", self.opts.app_channel_address))
    }

    pub(crate) fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the app may be given work; `false` when the sidecar shuts down first.
    pub(crate) async fn wait_app_healthy(&self) -> bool {
        // The usual case (health checks off, or a healthy app) costs one read, no subscription.
        if *self.app_healthy.borrow() {
            return true;
        }
        let mut healthy = self.app_healthy.subscribe();
        tokio::select! {
            result = healthy.wait_for(|h| *h) => result.is_ok(),
            () = self.shutdown.cancelled() => false,
        }
    }
}

/// A running sidecar.
#[derive(Debug)]
pub struct SidecarHandle {
    local_addr: SocketAddr,
    state: Arc<SidecarState>,
    servers: TaskTracker,
}

impl SidecarHandle {
    /// Address of the Dapr HTTP API (the first listen address).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://host:port` of the Dapr HTTP API.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// App id served.
    pub fn app_id(&self) -> &str {
        self.state.app_id()
    }

    /// A receiver that turns `true` once startup finished.
    pub fn ready_receiver(&self) -> tokio::sync::watch::Receiver<bool> {
        self.state.ready.subscribe()
    }

    /// Waits until startup finished (app channel up and subscriptions registered).
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        let mut rx = self.state.ready.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops delivering, closes subscriptions and stops the API server (graceful, up to 5 s).
    pub async fn shutdown(self) {
        let state = self.state;
        state.shutdown.cancel();
        state.runtime.unregister_app(state.app_id(), state.id);
        let subs: Vec<ActiveSubscription> = std::mem::take(
            &mut *state
                .subscriptions
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for sub in subs {
            sub.close().await;
        }
        state.tasks.close();
        self.servers.close();
        let grace = std::time::Duration::from_secs(5);
        let _ = tokio::time::timeout(grace, async {
            state.tasks.wait().await;
            self.servers.wait().await;
        })
        .await;
    }
}

/// Starts one sidecar on `runtime`: binds the API, then (in the background) waits for the app
/// port, reads `/dapr/subscribe` and starts delivering.
pub async fn start_sidecar(
    runtime: Arc<Runtime>,
    opts: SidecarOptions,
) -> Result<SidecarHandle, StartError> {
    if opts.app_id.trim().is_empty() {
        return Err(StartError::Options("app id is empty".into()));
    }
    if let Some(health) = &opts.app_health {
        health
            .validate()
            .map_err(|e| StartError::Options(format!("app health check {e}")))?;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| StartError::Client(e.to_string()))?;
    let addresses = if opts.listen_addresses.is_empty() {
        vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
    } else {
        opts.listen_addresses.clone()
    };
    let mut listeners = Vec::new();
    let mut port = opts.dapr_http_port;
    for ip in addresses {
        let addr = SocketAddr::new(ip, port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        port = bound.port();
        listeners.push((bound, listener));
    }
    let Some(local_addr) = listeners.first().map(|(a, _)| *a) else {
        return Err(StartError::Options("no listen address".into()));
    };
    let (ready, _) = tokio::sync::watch::channel(false);
    let (app_healthy, _) = tokio::sync::watch::channel(opts.app_health.is_none());
    let state = Arc::new(SidecarState {
        runtime,
        opts,
        id: NEXT_SIDECAR_ID.fetch_add(1, Ordering::Relaxed),
        app_channel_up: AtomicBool::new(false),
        ready,
        app_healthy,
        subscriptions: RwLock::new(Vec::new()),
        extended: Mutex::new(BTreeMap::new()),
        client,
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    let servers = TaskTracker::new();
    for (addr, listener) in listeners {
        let app = crate::api::router(state.clone());
        let token = state.shutdown.clone();
        servers.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(%addr, error = %e, "dapr API server failed");
            }
        });
    }
    tracing::info!(app_id = %state.app_id(), %local_addr, "dapr API listening");
    let startup = state.clone();
    state.tasks.spawn(crate::delivery::startup(startup));
    Ok(SidecarHandle {
        local_addr,
        state,
        servers,
    })
}
