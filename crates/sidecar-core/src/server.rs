//! One sidecar's server: binds the Dapr HTTP API, serves it, and starts the sidecar's lifecycle
//! (the `lifecycle` module) in the background; [`SidecarHandle`] stops it again.
//!
//! Before routing, paths are normalised like daprd's router (`//` collapsed, trailing `/`
//! stripped); then the API token is checked (healthz exempt) and the body limit applied.

use crate::api;
use crate::http_server;
use crate::invoke;
use crate::lifecycle;
use crate::options::SidecarOptions;
use crate::otel::{self, SidecarTracer};
use crate::runtime::Runtime;
use crate::sidecar::SidecarState;
use crate::tokens;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::routing::any;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// How long a connection to the app stays pooled while idle.
const APP_CHANNEL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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

    /// A read-only view into this sidecar that outlives the handle.
    pub fn inspector(&self) -> crate::inspect::SidecarInspector {
        crate::inspect::SidecarInspector::new(self.state.clone())
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
        lifecycle::stop(&self.state, &self.servers).await;
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
    // daprd's app channel keeps up to 64 idle connections to its app
    // (`pkg/runtime/channels/channels.go`), each for Go's 90 s. Here four sidecars share one
    // process, and after a burst their idle connections (about 20 KB of buffers each, plus the
    // pages they keep resident) held several MB of it for those 90 s; nothing an app sees
    // depends on how long an idle connection is kept, so they go after 10 s.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(APP_CHANNEL_IDLE_TIMEOUT)
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
    let tracer = opts
        .tracing
        .as_ref()
        .map(|tracing| SidecarTracer::new(&opts.app_id, tracing))
        .transpose()
        .map_err(StartError::Options)?;
    // The port actually bound (0 asked for any): observers tell sidecars apart by it.
    let opts = SidecarOptions {
        dapr_http_port: local_addr.port(),
        ..opts
    };
    let state = Arc::new(SidecarState::new(runtime, opts, client, tracer));
    let servers = TaskTracker::new();
    for (_, listener) in listeners {
        let app = router(state.clone());
        let token = state.shutdown.clone();
        servers.spawn(http_server::serve(listener, app, token));
    }
    tracing::info!(app_id = %state.app_id(), %local_addr, "dapr API listening");
    let startup = state.clone();
    state.tasks.spawn(lifecycle::start(startup));
    Ok(SidecarHandle {
        local_addr,
        state,
        servers,
    })
}

/// Builds the API router of one sidecar: the Dapr API and service invocation, behind the token
/// check and the body limit.
fn router(state: Arc<SidecarState>) -> Router {
    let api = api::routes()
        .route(
            "/v1.0/invoke/{app_id}/method/{*method}",
            any(invoke::invoke),
        )
        .layer(DefaultBodyLimit::max(state.opts.max_body_size))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            tokens::check_api_token,
        ));
    // Only a tracing sidecar has the layer: without it, calls cost what they did before.
    let api = match state.tracer.clone() {
        Some(tracer) => api.layer(axum::middleware::from_fn_with_state(
            tracer,
            otel::trace_api_call,
        )),
        None => api,
    }
    .with_state(state);
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::map_request(normalize_path))
}

/// Collapses `//` and strips a trailing `/` (daprd's router does the same).
async fn normalize_path(mut req: Request) -> Request {
    let path = req.uri().path();
    if path.len() > 1 && (path.ends_with('/') || path.contains("//")) {
        let mut clean = String::with_capacity(path.len());
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            clean.push('/');
            clean.push_str(seg);
        }
        if clean.is_empty() {
            clean.push('/');
        }
        if let Some(q) = req.uri().query() {
            clean.push('?');
            clean.push_str(q);
        }
        if let Ok(pq) = clean.parse::<axum::http::uri::PathAndQuery>() {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}
