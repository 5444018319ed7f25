//! `pubsub.in-memory`: a broker shared by every sidecar of one runtime.
//!
//! Each topic has consumer groups; every group receives every message published after it was
//! created (fan-out across groups), and the members of one group compete for its messages (one
//! queue, several subscribers). A group outlives its members, so a restarted sidecar picks up what
//! was queued meanwhile, like a Redis Streams group.
//!
//! Redelivery: when the subscriber side reports a failure, the message goes back to its group
//! after an exponential backoff (100 ms doubling to 5 s), without limit, until the component shuts
//! down. There is no broker to redeliver from, so this stands in for Redis' pending-entry reclaim
//! and Kafka's blocking retries.

use super::{
    HandlerResult, Message, MessageHandler, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// First redelivery delay.
pub const REDELIVERY_INITIAL: Duration = Duration::from_millis(100);
/// Longest redelivery delay.
pub const REDELIVERY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Pending {
    msg: Message,
    attempt: u32,
}

type Queue = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>;

#[derive(Debug, Clone)]
struct Group {
    tx: mpsc::UnboundedSender<Pending>,
    rx: Queue,
}

/// In-memory broker.
#[derive(Debug, Default)]
pub struct InMemoryPubSub {
    /// topic -> group name -> group
    topics: Mutex<HashMap<String, HashMap<String, Group>>>,
    shutdown: CancellationToken,
}

impl InMemoryPubSub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops redelivery timers and every subscription worker.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    fn group(&self, topic: &str, name: &str) -> Group {
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        topics
            .entry(topic.to_string())
            .or_default()
            .entry(name.to_string())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                Group {
                    tx,
                    rx: Arc::new(tokio::sync::Mutex::new(rx)),
                }
            })
            .clone()
    }
}

/// Delay before redelivery attempt `attempt` (1-based).
pub fn redelivery_delay(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    REDELIVERY_INITIAL
        .saturating_mul(factor)
        .min(REDELIVERY_MAX)
}

impl PubSub for InMemoryPubSub {
    fn features(&self) -> Vec<String> {
        Vec::new()
    }

    fn publish(&self, msg: Message) -> BoxFuture<'_, Result<(), PubSubError>> {
        let groups: Vec<Group> = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&msg.topic)
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default();
        for group in groups {
            // A send only fails when the receiver is gone, which cannot happen while the group
            // is in the map.
            let _ = group.tx.send(Pending {
                msg: msg.clone(),
                attempt: 0,
            });
        }
        Box::pin(async { Ok(()) })
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: MessageHandler,
    ) -> BoxFuture<'_, Result<Subscription, PubSubError>> {
        let group = self.group(&req.topic, &req.consumer_group);
        let cancel = self.shutdown.child_token();
        let tracker = tokio_util::task::TaskTracker::new();
        for _ in 0..req.concurrency.max(1) {
            tracker.spawn(worker(
                group.clone(),
                handler.clone(),
                cancel.clone(),
                self.shutdown.clone(),
            ));
        }
        Box::pin(async move { Ok(Subscription::new(cancel, tracker)) })
    }
}

async fn worker(
    group: Group,
    handler: MessageHandler,
    cancel: CancellationToken,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            next = async { group.rx.lock().await.recv().await } => next,
        };
        let Some(pending) = next else { return };
        let outcome: Option<HandlerResult> = tokio::select! {
            r = handler(pending.msg.clone()) => Some(r),
            _ = cancel.cancelled() => None,
        };
        match outcome {
            Some(Ok(())) => {}
            None => {
                // Cancelled mid-delivery: hand the message back to the group untouched.
                let _ = group.tx.send(pending);
                return;
            }
            Some(Err(error)) => {
                let attempt = pending.attempt + 1;
                let delay = redelivery_delay(attempt);
                tracing::debug!(topic = %pending.msg.topic, attempt, ?delay, %error, "message not processed; redelivering after backoff");
                let tx = group.tx.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {
                            let _ = tx.send(Pending { msg: pending.msg, attempt });
                        }
                        _ = shutdown.cancelled() => {}
                    }
                });
            }
        }
    }
}
