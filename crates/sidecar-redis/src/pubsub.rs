//! `pubsub.redis` on Redis Streams, with the commands and defaults of components-contrib's
//! `pubsub/redis/redis.go` (`Publish`, `Subscribe`, `pollNewMessagesLoop`,
//! `reclaimPendingMessagesLoop`, `processMessage`).
//!
//! * Publish: `XADD <topic> [MAXLEN ~ n | MINID ~ <now - streamTTL>] * data <bytes> metadata <json>`.
//! * Subscribe: `XGROUP CREATE <topic> <group> 0 MKSTREAM` (an existing group is fine), so a new
//!   group first receives every entry still in the stream. The consumer name is the group name.
//! * Each subscription reads with `XREADGROUP ... >` on a connection of its own, hands entries to
//!   `concurrency` workers through a queue of `queueDepth`, and `XACK`s what the handler accepted.
//!   Failed entries stay pending and are claimed again once idle for `processingTimeout`, checked
//!   every `redeliverInterval` (either set to 0 disables redelivery).

use crate::connection::Connector;
use crate::settings::RedisSettings;
use crate::streams::{self, Subscriber};
use futures::future::BoxFuture;
use sidecar_core::components::{
    Message, MessageHandler, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use sidecar_core::resources::{ComponentSpec, ResourceError};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Redis Streams pub/sub.
#[derive(Debug)]
pub struct RedisPubSub {
    settings: RedisSettings,
    connector: Arc<Connector>,
    shutdown: CancellationToken,
}

impl RedisPubSub {
    /// Validates the metadata of `spec` and checks that Redis is reachable.
    pub fn from_spec(spec: &ComponentSpec) -> Result<Self, ResourceError> {
        let settings = RedisSettings::from_spec(spec)?;
        let connector = Connector::for_component(spec, &settings)?;
        Ok(Self {
            settings,
            connector: Arc::new(connector),
            shutdown: CancellationToken::new(),
        })
    }

    /// The settings read from the component metadata.
    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    async fn publish_message(&self, msg: Message) -> Result<(), PubSubError> {
        let metadata = serde_json::to_string(&msg.metadata)
            .map_err(|e| PubSubError(format!("redis streams: cannot encode metadata: {e}")))?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&msg.topic);
        if let Some(max) = self.settings.max_len_approx {
            cmd.arg("MAXLEN").arg("~").arg(max);
        } else if let Some(ttl) = self.settings.stream_ttl {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let cutoff = now_ms.saturating_sub(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
            cmd.arg("MINID").arg("~").arg(format!("{cutoff}-1"));
        }
        cmd.arg("*")
            .arg("data")
            .arg(msg.data.as_ref())
            .arg("metadata")
            .arg(metadata);
        let mut con = self
            .connector
            .shared()
            .await
            .map_err(|e| PubSubError(format!("redis streams: error from publish: {e}")))?;
        let _: String = cmd
            .query_async(&mut con)
            .await
            .map_err(|e| PubSubError(format!("redis streams: error from publish: {e}")))?;
        Ok(())
    }

    async fn subscribe_topic(
        &self,
        req: SubscribeRequest,
        handler: MessageHandler,
    ) -> Result<Subscription, PubSubError> {
        let mut con = self
            .connector
            .shared()
            .await
            .map_err(|e| PubSubError(format!("redis streams: {e}")))?;
        streams::create_group(&mut con, &req.topic, &req.consumer_group)
            .await
            .map_err(|e| PubSubError(format!("redis streams: {e}")))?;
        let cancel = self.shutdown.child_token();
        let tracker = tokio_util::task::TaskTracker::new();
        let subscriber = Arc::new(Subscriber {
            topic: req.topic,
            group: req.consumer_group,
            connector: self.connector.clone(),
            settings: self.settings.clone(),
            handler,
            cancel: cancel.clone(),
        });
        let (tx, rx) = tokio::sync::mpsc::channel(self.settings.queue_depth);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        tracker.spawn(subscriber.clone().read_loop(tx.clone()));
        tracker.spawn(subscriber.clone().reclaim_loop(tx));
        for _ in 0..req.concurrency.max(1) {
            tracker.spawn(subscriber.clone().worker(rx.clone()));
        }
        Ok(Subscription::new(cancel, tracker))
    }
}

impl PubSub for RedisPubSub {
    fn features(&self) -> Vec<String> {
        Vec::new()
    }

    fn publish(&self, msg: Message) -> BoxFuture<'_, Result<(), PubSubError>> {
        Box::pin(self.publish_message(msg))
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: MessageHandler,
    ) -> BoxFuture<'_, Result<Subscription, PubSubError>> {
        Box::pin(self.subscribe_topic(req, handler))
    }

    /// Stops every subscription of this component.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.shutdown.cancel();
        Box::pin(async {})
    }
}
