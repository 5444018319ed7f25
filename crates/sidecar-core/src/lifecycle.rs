//! The life of one sidecar, in daprd's order (`DaprRuntime.blockUntilAppIsReady` and
//! `initRuntime` in daprd's `pkg/runtime/runtime.go`): wait until the app port accepts a TCP
//! connection (every 100 ms, no timeout), make the app reachable for service invocation, start
//! the app health probes if they are on (and then wait for the app's first successful probe,
//! as daprd's `appHealthChanged` does), call `GET /dapr/config` (answer ignored), read
//! `GET /dapr/subscribe` (`GetSubscriptionsHTTP` in `pkg/runtime/pubsub/subscriptions.go`), merge
//! with the declarative subscriptions scoped to this app, register them with the brokers, and
//! only then report ready on `/v1.0/healthz`. [`stop`] is the way back.

use crate::app_health;
use crate::app_subscriptions;
use crate::runtime::AppEndpoint;
use crate::sidecar::SidecarState;
use crate::subscriptions::{self, SubscriptionDef, programmatic};
use crate::tokens::TOKEN_HEADER;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// The start of a sidecar (see the module doc), run in the background once its API listens.
pub(crate) async fn start(state: Arc<SidecarState>) {
    let (Some(base), Some(port)) = (state.app_base_url(), state.opts.app_port) else {
        // No app channel: nothing to deliver to, ready at once.
        state.ready.send_replace(true);
        return;
    };
    let addr = format!("{}:{port}", state.opts.app_channel_address);
    if !wait_for_app_port(&state, &addr).await {
        return;
    }
    state.app_channel_up.store(true, Ordering::SeqCst);
    if let Ok(Some(sock)) = tokio::net::lookup_host(&addr).await.map(|mut a| a.next()) {
        state.runtime.register_app(
            state.app_id(),
            AppEndpoint {
                sidecar_id: state.id,
                addr: sock,
                app_api_token: state.opts.app_api_token.clone(),
                healthy: state.app_healthy.subscribe(),
                access_control: state.opts.access_control.clone(),
            },
        );
    }
    let health_checked = state.opts.app_health.clone();
    if let Some(health) = health_checked.clone() {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        state.tasks.spawn(app_health::run_probes(
            state.clone(),
            health,
            base.clone(),
            first_tx,
        ));
        tokio::select! {
            _ = first_rx => {}
            () = state.shutdown.cancelled() => return,
        }
        if !*state.app_healthy.borrow() {
            // daprd reports itself healthy without waiting for the app's health; subscriptions
            // (and the one `/dapr/subscribe` call) wait for the first successful probe.
            state.ready.send_replace(true);
            tracing::info!(app_id = %state.app_id(), "sidecar ready; subscriptions start at the app's first successful health probe");
            if !state.wait_app_healthy().await {
                return;
            }
        }
    }
    let mut config = state
        .client
        .get(format!("{base}/dapr/config"))
        .header("dapr-app-id", state.app_id())
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(5));
    if let Some(token) = &state.opts.app_api_token {
        config = config.header(TOKEN_HEADER, token);
    }
    let _ = config.send().await;
    let programmatic = fetch_programmatic(&state, &base).await;
    let declarative = subscriptions::declarative(state.runtime.resources(), state.app_id());
    let defs = subscriptions::merge(declarative, programmatic);
    app_subscriptions::start_all(&state, &defs).await;
    if state.shutdown.is_cancelled() {
        return;
    }
    if health_checked.is_some() {
        state
            .tasks
            .spawn(app_subscriptions::follow_health(state.clone(), defs, true));
    }
    state.ready.send_replace(true);
    tracing::info!(app_id = %state.app_id(), "sidecar ready");
}

async fn wait_for_app_port(state: &SidecarState, addr: &str) -> bool {
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = state.shutdown.cancelled() => return false,
        }
    }
}

/// Calls `GET /dapr/subscribe`, retrying with backoff until the app answers (or the sidecar
/// stops). Only 200 is decoded; 404 means none; other statuses are logged and give none.
async fn fetch_programmatic(state: &SidecarState, base: &str) -> Vec<SubscriptionDef> {
    let url = format!("{base}/dapr/subscribe");
    let mut delay = Duration::from_millis(100);
    loop {
        let mut req = state
            .client
            .get(&url)
            .header("dapr-app-id", state.app_id())
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(10));
        if let Some(token) = &state.opts.app_api_token {
            req = req.header(TOKEN_HEADER, token);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.bytes().await.unwrap_or_default();
                return match status {
                    200 => match programmatic::parse(&body) {
                        Ok(subs) => subs,
                        Err(e) => {
                            tracing::error!(app_id = %state.app_id(), error = %e, "cannot decode /dapr/subscribe; no programmatic subscriptions");
                            Vec::new()
                        }
                    },
                    404 => Vec::new(),
                    other => {
                        tracing::error!(app_id = %state.app_id(), status = other, "/dapr/subscribe did not answer 200; no programmatic subscriptions");
                        Vec::new()
                    }
                };
            }
            Err(e) => {
                tracing::debug!(app_id = %state.app_id(), error = %e, ?delay, "/dapr/subscribe unreachable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = state.shutdown.cancelled() => return Vec::new(),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Stops the sidecar: no new deliveries, its app leaves service invocation, its subscriptions
/// leave their consumer groups, then its tasks and API servers get up to 5 s to finish.
pub(crate) async fn stop(state: &SidecarState, servers: &TaskTracker) {
    state.shutdown.cancel();
    state.runtime.unregister_app(state.app_id(), state.id);
    app_subscriptions::stop_all(state).await;
    state.tasks.close();
    servers.close();
    let grace = Duration::from_secs(5);
    let _ = tokio::time::timeout(grace, async {
        state.tasks.wait().await;
        servers.wait().await;
    })
    .await;
    // Last: the spans of the deliveries and calls that just ended are queued.
    if let Some(tracer) = state.tracer.clone() {
        let _ = tokio::task::spawn_blocking(move || tracer.shutdown()).await;
    }
}
