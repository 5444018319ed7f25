//! One subscription: a member of the app's consumer group on one topic, delivering each
//! partition's records strictly one at a time while partitions run in parallel, as
//! components-contrib's `consumer.go ConsumeClaim` does for a single (non-bulk) subscription.
//!
//! * A bulk subscription hands a partition's records over as batches instead, as `ConsumeClaim`
//!   does when bulk subscribe is on (it collects up to `maxMessagesCount` of a claim's messages,
//!   flushed when full or on the `maxAwaitDurationMs` ticker): a worker keeps up to
//!   `maxMessagesCount` of its partition's records in flight, so the sidecar's bulk layer
//!   gathers them into batches (full, or after its wait). Each record is retried on its own, and
//!   offsets are stored in order: the partition moves past a record only once it and every
//!   record before it are settled.
//! * A dispatcher polls the consumer and queues each record on its partition's worker; a worker
//!   whose queue grows past `channelBufferSize` pauses fetching of its partition until it has
//!   caught up, so a blocked partition neither holds up the others nor piles up in memory. A
//!   resumed partition whose broker skipped the rest of a record batch is fetched again from
//!   where its fetching last started ([`crate::refetch`]).
//! * A worker hands one record to the sidecar; on failure it retries the same record under the
//!   `backOff*` policy (constant 5 s, forever, by default), blocking only its partition. When
//!   finite retries run out the record is skipped, as daprd logs "Too many failed attempts".
//! * The offset after a record is stored only once the record is handled or skipped; librdkafka
//!   commits stored offsets every second and when partitions are revoked or the consumer closes.
//! * A revoked partition stops its worker at once (a delivery in flight finishes, but is not
//!   retried and its offset is not stored): the new owner gets the record again.

use crate::backoff::BackoffPolicy;
use crate::client::{TracingContext, consumer_config};
use crate::record::message_of;
use crate::refetch::{Admit, Track};
use crate::settings::KafkaSettings;
use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use sidecar_core::components::{MessageHandler, PubSubError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often resumed partitions are checked for records that did not come.
const STALL_CHECK: Duration = Duration::from_secs(1);

/// `(topic, partition)`.
type PartitionKey = (String, i32);

/// The live workers of one consumer, shared with the rebalance callback.
type Workers = Arc<Mutex<HashMap<PartitionKey, Arc<Worker>>>>;

/// Rebalance callbacks of one consumer: a revoked partition's worker stops.
struct GroupContext {
    workers: Workers,
    tracing: TracingContext,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.tracing.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.tracing.error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
            for elem in list.elements() {
                if let Some(worker) = workers.remove(&(elem.topic().to_owned(), elem.partition())) {
                    worker.cancel.cancel();
                }
            }
        }
    }
}

/// One partition's worker, as the dispatcher sees it.
struct Worker {
    queue: mpsc::UnboundedSender<OwnedMessage>,
    /// Records queued and whether fetching is paused.
    backlog: Mutex<(usize, bool)>,
    /// The offsets queued, to catch records skipped when fetching resumed.
    track: Mutex<Track>,
    cancel: CancellationToken,
}

/// Everything the tasks of one subscription share.
pub(crate) struct Member {
    consumer: StreamConsumer<GroupContext>,
    workers: Workers,
    handler: MessageHandler,
    topic: String,
    group: String,
    backoff: BackoffPolicy,
    consume_retry: bool,
    retry_interval: Duration,
    escape_headers: bool,
    high_water: usize,
    /// Records handed over at once per partition: 1, or `maxMessagesCount` for a bulk
    /// subscription.
    batch: usize,
    cancel: CancellationToken,
    partitions: TaskTracker,
}

/// What became of one record.
enum Outcome {
    /// Handled, or skipped after its retries: its offset may be committed.
    Done,
    /// The partition was revoked or the subscription stopped: leave it to the next owner.
    Abandoned,
}

impl Member {
    /// Joins `group` on `topic`; the returned member runs once [`Member::run`] is spawned.
    pub(crate) fn join(
        settings: &KafkaSettings,
        topic: &str,
        group: &str,
        bulk_max_messages: Option<usize>,
        handler: MessageHandler,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, PubSubError> {
        let workers = Workers::default();
        let context = GroupContext {
            workers: workers.clone(),
            tracing: TracingContext::default(),
        };
        let consumer: StreamConsumer<GroupContext> = consumer_config(settings, group)
            .create_with_context(context)
            .map_err(|e| {
                PubSubError(format!(
                    "kafka: cannot create the consumer of group {group}: {e}"
                ))
            })?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| PubSubError(format!("kafka: cannot subscribe to topic {topic}: {e}")))?;
        Ok(Arc::new(Self {
            consumer,
            workers,
            handler,
            topic: topic.to_owned(),
            group: group.to_owned(),
            backoff: settings.backoff.clone(),
            consume_retry: settings.consume_retry,
            retry_interval: settings.consume_retry_interval,
            escape_headers: settings.escape_headers,
            high_water: settings.channel_buffer_size,
            batch: bulk_max_messages.unwrap_or(1).max(1),
            cancel,
            partitions: TaskTracker::new(),
        }))
    }

    /// Polls the consumer until the subscription stops, then waits for the partition workers,
    /// commits what they handled and leaves the group.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut last_error = String::new();
        let mut stall_checks = tokio::time::interval(STALL_CHECK);
        stall_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let polled = tokio::select! {
                () = self.cancel.cancelled() => break,
                _ = stall_checks.tick() => {
                    self.refetch_idle();
                    continue;
                }
                polled = self.consumer.recv() => polled.map(|m| m.detach()),
            };
            match polled {
                Ok(record) => self.dispatch(record),
                Err(e) => {
                    // Errors such as an unknown topic or an unreachable broker are reported here
                    // while librdkafka keeps retrying; pause as `consumeRetryInterval` does, and
                    // say it once rather than at every retry.
                    let error = e.to_string();
                    if error == last_error {
                        tracing::debug!(topic = %self.topic, group = %self.group, %error, "kafka consumer error");
                    } else {
                        tracing::warn!(topic = %self.topic, group = %self.group, %error, "kafka consumer error");
                        last_error = error;
                    }
                    tokio::select! {
                        () = self.cancel.cancelled() => break,
                        () = tokio::time::sleep(self.retry_interval.max(Duration::from_millis(100))) => {}
                    }
                }
            }
        }
        let stopping: Vec<_> = self
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, w)| w)
            .collect();
        for worker in stopping {
            worker.cancel.cancel();
        }
        self.partitions.close();
        self.partitions.wait().await;
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
            Err(e) => {
                tracing::warn!(topic = %self.topic, group = %self.group, error = %e, "kafka: final offset commit failed");
            }
        }
        self.consumer.unsubscribe();
    }

    /// Fetches again each resumed partition from which nothing has come
    /// ([`Track::idle_after_resume`]). It is resumed again first: a resume that librdkafka got
    /// before it had applied the pause is ignored (`rdkafka_partition.c
    /// rd_kafka_toppar_op_pause_resume`), which would leave the partition paused; a second
    /// resume of an active partition does nothing.
    fn refetch_idle(&self) {
        let idle: Vec<(PartitionKey, i64)> = self
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|(key, worker)| {
                let from = worker
                    .track
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .idle_after_resume()?;
                Some((key.clone(), from))
            })
            .collect();
        for (key, from) in idle {
            self.set_paused(&key, false);
            let (topic, partition) = key;
            match self
                .consumer
                .seek(&topic, partition, Offset::Offset(from), Duration::ZERO)
            {
                Ok(()) => {
                    tracing::debug!(%topic, partition, from, "kafka: nothing since the resume; fetching again");
                }
                Err(e) => {
                    tracing::warn!(%topic, partition, from, error = %e, "kafka: nothing since the resume, and the partition cannot be fetched again");
                }
            }
        }
    }

    /// Queues `record` on its partition's worker, starting one for a newly seen partition.
    fn dispatch(self: &Arc<Self>, record: OwnedMessage) {
        let key = (record.topic().to_owned(), record.partition());
        let worker = {
            let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
            workers
                .entry(key.clone())
                .or_insert_with(|| self.start_worker(key.clone()))
                .clone()
        };
        let admitted = worker
            .track
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(record.offset());
        match admitted {
            Admit::Queue => {}
            Admit::Skip => return,
            Admit::Refetch(from) => {
                // Asynchronous (no wait): records already fetched for the partition are dropped
                // by librdkafka, and the ones from `from` come again.
                match self
                    .consumer
                    .seek(&key.0, key.1, Offset::Offset(from), Duration::ZERO)
                {
                    Ok(()) => {
                        tracing::debug!(topic = %key.0, partition = key.1, offset = record.offset(), from, "kafka: records skipped after a resume; fetching them again");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(topic = %key.0, partition = key.1, offset = record.offset(), from, error = %e, "kafka: records before this one were skipped by the broker and cannot be fetched again");
                        let _ = worker
                            .track
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .admit(record.offset());
                    }
                }
            }
        }
        {
            let mut backlog = worker
                .backlog
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            backlog.0 += 1;
            if backlog.0 >= self.high_water && !backlog.1 {
                backlog.1 = self.set_paused(&key, true);
            }
        }
        // A closed queue means the worker was revoked between the lookup and now; the record
        // goes to the partition's next owner.
        let _ = worker.queue.send(record);
    }

    fn start_worker(self: &Arc<Self>, key: PartitionKey) -> Arc<Worker> {
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = Arc::new(Worker {
            queue: tx,
            backlog: Mutex::new((0, false)),
            track: Mutex::new(Track::default()),
            cancel: self.cancel.child_token(),
        });
        self.partitions
            .spawn(self.clone().work(key, worker.clone(), rx));
        worker
    }

    /// Pauses or resumes fetching of one partition; returns the new paused state.
    fn set_paused(&self, (topic, partition): &PartitionKey, pause: bool) -> bool {
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, *partition);
        let result = if pause {
            self.consumer.pause(&list)
        } else {
            self.consumer.resume(&list)
        };
        match result {
            Ok(()) => pause,
            Err(e) => {
                tracing::debug!(%topic, partition, error = %e, pause, "kafka: pause/resume failed");
                !pause
            }
        }
    }

    /// Handles one partition's records until it is revoked or the subscription stops: one at a
    /// time, or for a bulk subscription up to `maxMessagesCount` in flight, their offsets stored
    /// in order as each prefix settles.
    async fn work(
        self: Arc<Self>,
        key: PartitionKey,
        worker: Arc<Worker>,
        mut queue: mpsc::UnboundedReceiver<OwnedMessage>,
    ) {
        let mut in_flight = FuturesOrdered::new();
        // Taking records stops when the partition is revoked or its queue closes; what is in
        // flight then finishes (it is not retried). Once a record is abandoned no later offset
        // is stored either: the next owner gets it and everything after it again.
        let mut open = true;
        let mut gap = false;
        loop {
            tokio::select! {
                biased;
                settled = in_flight.next(), if !in_flight.is_empty() => {
                    let Some((outcome, record)) = settled else { continue };
                    match outcome {
                        Outcome::Done if !gap => self.store_offset(&record),
                        Outcome::Done => {}
                        Outcome::Abandoned => {
                            gap = true;
                            open = false;
                        }
                    }
                }
                () = worker.cancel.cancelled(), if open => open = false,
                record = queue.recv(), if open && in_flight.len() < self.batch => {
                    let Some(record) = record else {
                        open = false;
                        continue;
                    };
                    self.took_one(&key, &worker);
                    let member = Arc::clone(&self);
                    let cancel = worker.cancel.clone();
                    in_flight.push_back(async move {
                        let outcome = member.process(&record, &cancel).await;
                        (outcome, record)
                    });
                }
                else => break,
            }
            if !open && in_flight.is_empty() {
                break;
            }
        }
    }

    /// Accounts for a record taken off `key`'s queue, resuming fetching once it has drained.
    fn took_one(&self, key: &PartitionKey, worker: &Worker) {
        let mut backlog = worker
            .backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        backlog.0 = backlog.0.saturating_sub(1);
        if backlog.1 && backlog.0 <= self.high_water / 4 {
            // Noted before the resume, whose first record may come at once.
            worker
                .track
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .resumed();
            backlog.1 = self.set_paused(key, false);
        }
    }

    /// Delivers one record, retrying under the `backOff*` policy while the app refuses it.
    async fn process(&self, record: &OwnedMessage, cancel: &CancellationToken) -> Outcome {
        let message = message_of(record, self.escape_headers);
        let mut schedule = self.backoff.start();
        loop {
            let reason = match (self.handler)(message.clone()).await {
                Ok(()) => return Outcome::Done,
                Err(reason) => reason,
            };
            if cancel.is_cancelled() {
                return Outcome::Abandoned;
            }
            let delay = if self.consume_retry {
                schedule.next_delay()
            } else {
                None
            };
            let Some(delay) = delay else {
                tracing::warn!(topic = %record.topic(), partition = record.partition(), offset = record.offset(), %reason, "too many failed attempts at processing the Kafka message: skipped");
                return Outcome::Done;
            };
            tracing::debug!(topic = %record.topic(), partition = record.partition(), offset = record.offset(), %reason, ?delay, "kafka message not processed: retrying");
            tokio::select! {
                () = cancel.cancelled() => return Outcome::Abandoned,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Marks `record` handled: the next commit moves the group past it.
    fn store_offset(&self, record: &OwnedMessage) {
        let mut list = TopicPartitionList::new();
        let stored = list
            .add_partition_offset(
                record.topic(),
                record.partition(),
                Offset::Offset(record.offset() + 1),
            )
            .and_then(|()| self.consumer.store_offsets(&list));
        if let Err(e) = stored {
            // The partition was revoked meanwhile; its next owner delivers the record again.
            tracing::debug!(topic = %record.topic(), partition = record.partition(), offset = record.offset(), error = %e, "kafka: offset not stored");
        }
    }
}
