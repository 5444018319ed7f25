//! Delivery of messages to the app: one broker subscription per subscription of the app
//! (`subscribe`), whose handler decodes, routes and POSTs each message (the `deliver` module),
//! reads the app's answer ([`outcome`]) and runs each attempt under the inbound resiliency
//! policy of the pub/sub (see [`crate::policies`]). Bulk subscriptions gather messages into
//! batches first ([`bulk`]), whatever the component.

pub mod bulk;
mod deliver;
pub mod outcome;

use crate::components::SubscribeRequest;
use crate::sidecar::SidecarState;
use crate::subscriptions::{ActiveSubscription, SubscriptionDef, routes};
use std::collections::HashMap;
use std::sync::Arc;

/// Delivery workers per pub/sub and app when the component sets no `concurrency` (Redis default).
pub const DEFAULT_CONCURRENCY: usize = 10;

/// Registers `def` with its broker; the semaphore of its pub/sub (in `semaphores`) bounds the
/// deliveries in flight to the app. `None` when the subscription is refused or fails.
pub(crate) async fn subscribe(
    state: &Arc<SidecarState>,
    def: SubscriptionDef,
    semaphores: &mut HashMap<String, Arc<tokio::sync::Semaphore>>,
) -> Option<ActiveSubscription> {
    let app_id = state.app_id();
    let Some(pubsub) = state.runtime.pubsub(app_id, &def.pubsubname).cloned() else {
        tracing::warn!(%app_id, pubsub = %def.pubsubname, topic = %def.topic, "subscription to an unknown pub/sub ignored");
        return None;
    };
    if !pubsub.scopes.may_subscribe(app_id, &def.topic) {
        tracing::warn!(%app_id, pubsub = %def.pubsubname, topic = %def.topic, "subscription refused by allowedTopics/subscriptionScopes");
        return None;
    }
    for rule in &def.rules {
        if let Err(e) = routes::validate(&rule.match_expr) {
            tracing::warn!(%app_id, topic = %def.topic, error = %e, "route rule does not compile; matching it will fail deliveries");
        }
    }
    let concurrency = pubsub
        .spec
        .meta("concurrency")
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|c| *c > 0)
        .unwrap_or(DEFAULT_CONCURRENCY);
    // Each message of a bulk subscription holds a handler call until its batch is settled, so
    // the component's concurrency caps the batch (daprd's default bulk subscriber: at most 10
    // entries on `pubsub.redis`). Letting two batches' worth of calls wait makes full batches
    // possible, and lets the next batch fill while one is at the app: with one batch's worth,
    // every call is held by the batch in flight, and the subscription delivers nothing more
    // until the app answers, so a consumer's rate is capped at one batch per round trip. The
    // app still sees no more POSTs at once than `concurrency`.
    let handler_calls = def
        .bulk
        .map_or(concurrency, |b| concurrency.max(2 * b.max_messages));
    let group = consumer_group(&pubsub, app_id);
    let semaphore = semaphores
        .entry(def.pubsubname.clone())
        .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(concurrency)))
        .clone();
    let runner = state.policies.delivery(&def.pubsubname);
    let deliverer = Arc::new(deliver::Deliverer::new(
        state.clone(),
        pubsub.clone(),
        def.clone(),
        runner,
        semaphore,
    ));
    let handler = match def.bulk {
        Some(settings) => bulk::handler(deliverer, settings),
        None => deliver::handler(deliverer),
    };
    let request = SubscribeRequest {
        topic: def.topic.clone(),
        consumer_group: group.clone(),
        concurrency: handler_calls,
        bulk_max_messages: def.bulk.map(|b| b.max_messages),
    };
    match pubsub.broker.subscribe(request, handler).await {
        Ok(handle) => {
            tracing::debug!(%app_id, pubsub = %def.pubsubname, topic = %def.topic, %group, kind = ?def.kind, "subscribed");
            Some(ActiveSubscription::new(def, handle))
        }
        Err(e) => {
            tracing::error!(%app_id, pubsub = %def.pubsubname, topic = %def.topic, error = %e, "subscribe failed");
            None
        }
    }
}

/// The consumer group `app_id` subscribes in: the component's own rule, else its `consumerID`
/// metadata (templates resolved), else the app id.
pub(crate) fn consumer_group(pubsub: &crate::runtime::PubSubComponent, app_id: &str) -> String {
    pubsub.broker.consumer_group(app_id).unwrap_or_else(|| {
        pubsub
            .spec
            .meta("consumerID")
            .filter(|c| !c.is_empty())
            .map(|c| crate::metadata::resolve_template(c, app_id))
            .unwrap_or_else(|| app_id.to_string())
    })
}
