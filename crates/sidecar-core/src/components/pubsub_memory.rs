//! `pubsub.in-memory`: a broker shared by every sidecar of one runtime.
//!
//! Each topic has consumer groups; every group receives every message published after it was
//! created (fan-out across groups), and the members of one group compete for its messages (one
//! queue, several subscribers). A group outlives its members for a grace period
//! ([`DEFAULT_IDLE_GROUP_TIMEOUT`]), so a restarted sidecar picks up what was queued meanwhile,
//! like a Redis Streams group, and an app whose health checks fail (its sidecar unsubscribes
//! until it is healthy again) finds what was published meanwhile.
//!
//! Idle groups: once a group has had no subscriber for the whole grace period it is dropped with
//! its queue, and messages published afterwards are not kept for it (a subscriber that comes back
//! later starts a new group, which sees only new messages). Without this, the queue of a group
//! whose last sidecar is gone would grow with every message until the run ends. Dapr's own
//! `pubsub.in-memory` keeps nothing for absent subscribers at all: it hands each message to the
//! handlers subscribed at that moment and drops it when there are none (components-contrib
//! `pubsub/in-memory/in-memory.go`, `Publish` on an in-process event bus). The grace period is
//! this sidecar's compromise between that and a durable broker. Idle groups are found at publish
//! time, across all topics, so a quiet run keeps what it holds until the next publish.
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
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// First redelivery delay.
pub const REDELIVERY_INITIAL: Duration = Duration::from_millis(100);
/// Longest redelivery delay.
pub const REDELIVERY_MAX: Duration = Duration::from_secs(5);
/// How long a consumer group keeps queueing without any subscriber: long enough for a sidecar
/// or app restart, short enough that an abandoned group does not hold a run's traffic.
pub const DEFAULT_IDLE_GROUP_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Pending {
    msg: Message,
    attempt: u32,
}

type Queue = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>;

/// Who is subscribed to a group, and since when nobody is.
#[derive(Debug)]
struct Members {
    count: usize,
    idle_since: Instant,
}

#[derive(Debug, Clone)]
struct Group {
    tx: mpsc::UnboundedSender<Pending>,
    rx: Queue,
    members: Arc<Mutex<Members>>,
}

impl Group {
    fn idle_for_longer_than(&self, grace: Duration, now: Instant) -> bool {
        let members = lock(&self.members);
        members.count == 0 && now.saturating_duration_since(members.idle_since) > grace
    }
}

/// One subscription's membership of a group; its workers share it, and the last one to finish
/// drops it.
#[derive(Debug)]
struct Membership(Arc<Mutex<Members>>);

impl Drop for Membership {
    fn drop(&mut self) {
        let mut members = lock(&self.0);
        members.count = members.count.saturating_sub(1);
        if members.count == 0 {
            members.idle_since = Instant::now();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere mid-update; the data is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// In-memory broker.
#[derive(Debug)]
pub struct InMemoryPubSub {
    /// topic -> group name -> group
    topics: Mutex<HashMap<String, HashMap<String, Group>>>,
    idle_group_timeout: Duration,
    shutdown: CancellationToken,
}

impl Default for InMemoryPubSub {
    fn default() -> Self {
        Self::with_idle_group_timeout(DEFAULT_IDLE_GROUP_TIMEOUT)
    }
}

impl InMemoryPubSub {
    pub fn new() -> Self {
        Self::default()
    }

    /// A broker that drops a consumer group once it has had no subscriber for `grace`.
    pub fn with_idle_group_timeout(grace: Duration) -> Self {
        Self {
            topics: Mutex::new(HashMap::new()),
            idle_group_timeout: grace,
            shutdown: CancellationToken::new(),
        }
    }

    /// Messages waiting in the queue of group `name` of `topic` (`None`: no such group). A
    /// queue a subscriber is waiting on is empty, and reads as such.
    pub fn queued(&self, topic: &str, name: &str) -> Option<usize> {
        let topics = lock(&self.topics);
        let group = topics.get(topic)?.get(name)?;
        Some(group.rx.try_lock().map_or(0, |rx| rx.len()))
    }

    /// Group `name` of `topic`, created when missing, with one more member.
    fn join(&self, topic: &str, name: &str) -> (Group, Membership) {
        let mut topics = lock(&self.topics);
        let group = topics
            .entry(topic.to_string())
            .or_default()
            .entry(name.to_string())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                Group {
                    tx,
                    rx: Arc::new(tokio::sync::Mutex::new(rx)),
                    members: Arc::new(Mutex::new(Members {
                        count: 0,
                        idle_since: Instant::now(),
                    })),
                }
            })
            .clone();
        // Counted while the topic map is locked, so a publish cannot drop the group in between.
        lock(&group.members).count += 1;
        let membership = Membership(group.members.clone());
        (group, membership)
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
        let groups: Vec<Group> = {
            let mut topics = lock(&self.topics);
            let now = Instant::now();
            topics.retain(|_, groups| {
                groups.retain(|_, g| !g.idle_for_longer_than(self.idle_group_timeout, now));
                !groups.is_empty()
            });
            topics
                .get(&msg.topic)
                .map(|g| g.values().cloned().collect())
                .unwrap_or_default()
        };
        for group in groups {
            // A send only fails when the receiver is gone, which cannot happen while the group
            // is in the map (and its queue with it).
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
        let (group, membership) = self.join(&req.topic, &req.consumer_group);
        let membership = Arc::new(membership);
        let cancel = self.shutdown.child_token();
        let tracker = tokio_util::task::TaskTracker::new();
        for _ in 0..req.concurrency.max(1) {
            tracker.spawn(worker(
                group.clone(),
                membership.clone(),
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
    // Held until the worker ends: the group is idle once every worker of every member has.
    _membership: Arc<Membership>,
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
            bulk_max_messages: None,
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
            bulk_max_messages: None,
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

    fn group_req(group: &str) -> SubscribeRequest {
        SubscribeRequest {
            topic: "t".into(),
            consumer_group: group.into(),
            concurrency: 1,
            bulk_max_messages: None,
        }
    }

    #[tokio::test]
    async fn a_group_without_subscribers_past_the_grace_period_is_dropped() {
        let bus = InMemoryPubSub::with_idle_group_timeout(Duration::from_millis(200));
        let (handler, calls, notify) = counting(0);
        let sub = bus.subscribe(group_req("gone"), handler).await.unwrap();
        bus.publish(msg("t", "seen")).await.unwrap();
        wait_calls(&calls, &notify, 1).await;
        sub.close().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0..100 {
            bus.publish(msg("t", &i.to_string())).await.unwrap();
        }
        assert_eq!(
            bus.queued("t", "gone"),
            None,
            "the idle group's queue is gone"
        );
    }

    #[tokio::test]
    async fn a_subscriber_back_within_the_grace_period_gets_what_was_published_meanwhile() {
        let bus = InMemoryPubSub::with_idle_group_timeout(Duration::from_secs(30));
        let (handler, calls, notify) = counting(0);
        let sub = bus
            .subscribe(group_req("restarting"), handler)
            .await
            .unwrap();
        sub.close().await;
        for i in 0..3 {
            bus.publish(msg("t", &i.to_string())).await.unwrap();
        }
        assert_eq!(bus.queued("t", "restarting"), Some(3));
        let (handler, calls2, notify2) = counting(0);
        let _back = bus
            .subscribe(group_req("restarting"), handler)
            .await
            .unwrap();
        wait_calls(&calls2, &notify2, 3).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        let _ = notify;
    }
}
