//! The state one sidecar shares between its API handlers, its deliveries, its health probes and
//! its lifecycle: options, runtime, resiliency policies, readiness, app health, subscriptions
//! and the app channel.

use crate::options::SidecarOptions;
use crate::otel::SidecarTracer;
use crate::policies::Policies;
use crate::runtime::Runtime;
use crate::subscriptions::ActiveSubscription;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

static NEXT_SIDECAR_ID: AtomicU64 = AtomicU64::new(1);

/// State shared by the handlers and tasks of one sidecar.
#[derive(Debug)]
pub struct SidecarState {
    pub runtime: Arc<Runtime>,
    pub opts: SidecarOptions,
    /// Resiliency policies and breakers of this sidecar (breaker state is per sidecar).
    pub policies: Policies,
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
    /// This sidecar's span exporter, when its Configuration enables tracing.
    pub(crate) tracer: Option<SidecarTracer>,
}

impl SidecarState {
    /// A sidecar that is not ready yet; its app counts as healthy unless health checks are on.
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        opts: SidecarOptions,
        client: reqwest::Client,
        tracer: Option<SidecarTracer>,
    ) -> Self {
        let (ready, _) = tokio::sync::watch::channel(false);
        let (app_healthy, _) = tokio::sync::watch::channel(opts.app_health.is_none());
        let policies = Policies::new(&runtime, &opts.app_id);
        Self {
            runtime,
            policies,
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
            tracer,
        }
    }

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

    /// Whether the app may be given work now (the app channel's health gate).
    pub(crate) fn app_is_healthy(&self) -> bool {
        *self.app_healthy.borrow()
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
