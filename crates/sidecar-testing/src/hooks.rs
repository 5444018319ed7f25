//! The harness's hooks into the components, installed as decorators of the component registry
//! when a cluster builds its runtime, so the production code never looks at them:
//!
//! * every pub/sub records what it accepted in the [`PublishLog`], fails the publishes
//!   [`Faults`] asks for, and delays or repeats deliveries to the subscribers;
//! * every state store fails the operations [`Faults`] asks for.
//!
//! The hooks sit where a broker or a database would misbehave, so they see every publish
//! (API, bulk entries and dead-letter copies alike) and every state operation of the API.

use crate::faults::Faults;
use crate::publish_log::PublishLog;
use futures::future::BoxFuture;
use sidecar_core::Registry;
use sidecar_core::components::{
    DeleteRequest, HandlerResult, Message, MessageHandler, PubSub, PubSubError, SetRequest,
    StateError, StateItem, StateStore, SubscribeRequest, Subscription, TransactionOp,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The state stores as the components built them, by component name: the harness reads state
/// through these, so its own reads never use up an injected failure.
pub(crate) type PlainStores = Arc<Mutex<BTreeMap<String, Arc<dyn StateStore>>>>;

/// Wraps every pub/sub and state store `registry` builds with the hooks.
pub(crate) fn install(
    registry: &mut Registry,
    faults: &Arc<Faults>,
    log: &Arc<PublishLog>,
    plain: &PlainStores,
) {
    let (faults_for_pubsubs, log) = (faults.clone(), log.clone());
    registry.decorate_pubsubs(move |_, inner| {
        Arc::new(HookedPubSub {
            inner,
            faults: faults_for_pubsubs.clone(),
            log: log.clone(),
        })
    });
    let (faults, plain) = (faults.clone(), plain.clone());
    registry.decorate_state_stores(move |spec, inner| {
        plain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(spec.name.clone(), inner.clone());
        Arc::new(FaultyStateStore {
            inner,
            faults: faults.clone(),
        })
    });
}

/// A pub/sub with the publish log, publish failures and delivery delays and duplicates.
#[derive(Debug)]
struct HookedPubSub {
    inner: Arc<dyn PubSub>,
    faults: Arc<Faults>,
    log: Arc<PublishLog>,
}

impl PubSub for HookedPubSub {
    fn features(&self) -> Vec<String> {
        self.inner.features()
    }

    fn consumer_group(&self, app_id: &str) -> Option<String> {
        self.inner.consumer_group(app_id)
    }

    fn publish(&self, msg: Message) -> BoxFuture<'_, Result<(), PubSubError>> {
        if self.faults.take_publish_failure() {
            return Box::pin(async { Err(PubSubError("injected publish failure".into())) });
        }
        Box::pin(async move {
            let topic = msg.topic.clone();
            let recorded = PublishLog::value_of(&msg.data);
            self.inner.publish(msg).await?;
            self.log.record(topic, recorded);
            Ok(())
        })
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: MessageHandler,
    ) -> BoxFuture<'_, Result<Subscription, PubSubError>> {
        let faults = self.faults.clone();
        let hooked: MessageHandler = Arc::new(move |msg: Message| {
            let (handler, faults) = (handler.clone(), faults.clone());
            Box::pin(async move { deliver(&handler, &faults, msg).await })
        });
        self.inner.subscribe(req, hooked)
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.inner.shutdown()
    }
}

/// One delivery through the hooks: after the injected delay, and once more (its result ignored)
/// when duplicates are on and the first one was accepted, as an at-least-once broker may do.
async fn deliver(handler: &MessageHandler, faults: &Faults, msg: Message) -> HandlerResult {
    let delay = faults.delivery_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if !faults.duplicates() {
        return handler(msg).await;
    }
    let result = handler(msg.clone()).await;
    if result.is_ok() {
        let _ = handler(msg).await;
    }
    result
}

/// A state store whose operations fail when [`Faults`] says so.
#[derive(Debug)]
struct FaultyStateStore {
    inner: Arc<dyn StateStore>,
    faults: Arc<Faults>,
}

impl FaultyStateStore {
    fn injected(&self) -> Option<StateError> {
        self.faults
            .take_state_failure()
            .then(|| StateError::Store("injected state store failure".into()))
    }
}

impl StateStore for FaultyStateStore {
    fn features(&self) -> Vec<String> {
        self.inner.features()
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<StateItem>, StateError>> {
        match self.injected() {
            Some(e) => Box::pin(async { Err(e) }),
            None => self.inner.get(key),
        }
    }

    fn set(&self, req: SetRequest) -> BoxFuture<'_, Result<(), StateError>> {
        match self.injected() {
            Some(e) => Box::pin(async { Err(e) }),
            None => self.inner.set(req),
        }
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<'_, Result<(), StateError>> {
        match self.injected() {
            Some(e) => Box::pin(async { Err(e) }),
            None => self.inner.delete(req),
        }
    }

    fn transact(&self, ops: Vec<TransactionOp>) -> BoxFuture<'_, Result<(), StateError>> {
        match self.injected() {
            Some(e) => Box::pin(async { Err(e) }),
            None => self.inner.transact(ops),
        }
    }

    fn keys(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
        self.inner.keys()
    }
}
