//! Starting and stopping all of an app's subscriptions together, as daprd does when the app's
//! health changes (`appHealthChanged` in `pkg/runtime/runtime.go`, `StartAppSubscriptions` and
//! `StopAppSubscriptions` in `pkg/runtime/processor/subscriber/subscriber.go`).
//!
//! The list of subscriptions is loaded once (declarative resources plus `GET /dapr/subscribe`);
//! when the app turns unhealthy every subscription leaves its broker, so the broker keeps the
//! messages in the app's consumer group instead of handing them over (a message in flight at
//! that moment is given back unacknowledged), and when it is healthy again the same list is
//! subscribed anew. `/dapr/subscribe` is not read again.

use crate::delivery;
use crate::sidecar::SidecarState;
use crate::subscriptions::{ActiveSubscription, SubscriptionDef};
use std::collections::HashMap;
use std::sync::Arc;

/// Registers every subscription of `defs` with its broker; the ones refused are logged.
pub(crate) async fn start_all(state: &Arc<SidecarState>, defs: &[SubscriptionDef]) {
    let mut semaphores: HashMap<String, Arc<tokio::sync::Semaphore>> = HashMap::new();
    for def in defs {
        if state.shutdown.is_cancelled() {
            return;
        }
        if let Some(active) = delivery::subscribe(state, def.clone(), &mut semaphores).await {
            state
                .subscriptions
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(active);
        }
    }
    if state.shutdown.is_cancelled() {
        // The sidecar began to stop while these were being registered: its stop may already
        // have taken the list, so close what was added after.
        stop_all(state).await;
    }
}

/// Closes every active subscription, waiting for its workers.
pub(crate) async fn stop_all(state: &SidecarState) {
    let subs: Vec<ActiveSubscription> = std::mem::take(
        &mut *state
            .subscriptions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for sub in subs {
        sub.close().await;
    }
}

/// Follows the app's health until the sidecar stops: unsubscribes everything when it turns
/// unhealthy, subscribes `defs` again when it turns healthy. `subscribed` says whether `defs` are
/// registered now.
pub(crate) async fn follow_health(
    state: Arc<SidecarState>,
    defs: Vec<SubscriptionDef>,
    mut subscribed: bool,
) {
    let mut health = state.app_healthy.subscribe();
    loop {
        let healthy = *health.borrow_and_update();
        if healthy && !subscribed {
            tracing::info!(app_id = %state.app_id(), subscriptions = defs.len(), "app is healthy: starting its subscriptions");
            start_all(&state, &defs).await;
            subscribed = true;
        } else if !healthy && subscribed {
            tracing::warn!(app_id = %state.app_id(), "app is unhealthy: stopping its subscriptions; messages wait in the broker");
            stop_all(&state).await;
            subscribed = false;
        }
        tokio::select! {
            changed = health.changed() => if changed.is_err() { return },
            () = state.shutdown.cancelled() => return,
        }
    }
}
