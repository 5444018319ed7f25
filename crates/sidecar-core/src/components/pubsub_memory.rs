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

    /// Stops redelivery timers and every subscription worker.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.shutdown.cancel();
        Box::pin(async {})
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn msg(topic: &str, body: &str) -> Message {
        Message {
            topic: topic.into(),
            data: bytes::Bytes::from(body.to_string()),
            metadata: Default::default(),
        }
    }

    fn counting(fail_first: usize) -> (MessageHandler, Arc<AtomicUsize>, Arc<tokio::sync::Notify>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (c, n) = (calls.clone(), notify.clone());
        let handler: MessageHandler = Arc::new(move |_m| {
            let k = c.fetch_add(1, Ordering::SeqCst);
            n.notify_one();
            Box::pin(async move {
                if k < fail_first {
                    Err("no".into())
                } else {
                    Ok(())
                }
            })
        });
        (handler, calls, notify)
    }

    async fn wait_calls(calls: &AtomicUsize, notify: &tokio::sync::Notify, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while calls.load(Ordering::SeqCst) < n {
            tokio::time::timeout_at(deadline, notify.notified())
                .await
                .expect("handler not called often enough");
        }
    }

    #[tokio::test]
    async fn failed_messages_are_redelivered_until_processed() {
        let bus = InMemoryPubSub::new();
        let (handler, calls, notify) = counting(3);
        let req = SubscribeRequest {
            topic: "t".into(),
            consumer_group: "g".into(),
            concurrency: 2,
        };
        let _s = bus.subscribe(req, handler).await.unwrap();
        bus.publish(msg("t", "x")).await.unwrap();
        wait_calls(&calls, &notify, 4).await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn groups_fan_out_and_members_compete() {
        let bus = InMemoryPubSub::new();
        let (h1, c1, n1) = counting(0);
        let (h2, c2, _n2) = counting(0);
        let (h3, c3, n3) = counting(0);
        let req = |g: &str| SubscribeRequest {
            topic: "t".into(),
            consumer_group: g.into(),
            concurrency: 1,
        };
        let _a = bus.subscribe(req("a"), h1).await.unwrap();
        let _b = bus.subscribe(req("a"), h2).await.unwrap();
        let _c = bus.subscribe(req("c"), h3).await.unwrap();
        for i in 0..10 {
            bus.publish(msg("t", &i.to_string())).await.unwrap();
        }
        wait_calls(&c3, &n3, 10).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while c1.load(Ordering::SeqCst) + c2.load(Ordering::SeqCst) < 10 {
            tokio::time::timeout_at(deadline, n1.notified()).await.ok();
            assert!(tokio::time::Instant::now() < deadline);
        }
        assert_eq!(c1.load(Ordering::SeqCst) + c2.load(Ordering::SeqCst), 10);
        assert_eq!(c3.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn redelivery_backoff_doubles_up_to_the_cap() {
        assert_eq!(redelivery_delay(1), Duration::from_millis(100));
        assert_eq!(redelivery_delay(2), Duration::from_millis(200));
        assert_eq!(redelivery_delay(10), REDELIVERY_MAX);
    }
}
