//! The outbox: how a committed task change always produces its event, exactly the events of
//! committed changes, even if the process dies between the state write and the publish.
//!
//! # Mechanism
//!
//! 1. **Record in the same transaction.** Every change is one Dapr state transaction that writes
//!    `task:{id}` (etag-checked; `first-write` on create), the user's index, and the shard
//!    `outbox:{n}` (`n = fnv(task id) % OUTBOX_SHARDS`, etag-checked) with the event's envelope
//!    appended. So a committed change has its event recorded, and the task record itself lists
//!    the `(version, event_id)` of its recent changes.
//! 2. **Publish right away.** After the commit the handler publishes the envelope (CloudEvent
//!    id/type = event id/type, partition key = task id, the caller's `traceparent`) and notes the
//!    entry as published. Published entries leave their shard with the next transaction that
//!    writes that shard anyway, or, for a shard nobody writes, with a periodic sweep (one
//!    etag-checked write per shard): a separate removal per request would double the writes to
//!    the shard keys, which every request contends on. If the publish fails, the request still
//!    succeeds: the change is committed and the relay will publish it.
//! 3. **Relay.** At start-up and every `OUTBOX_RELAY_INTERVAL`, the relay reads every shard and
//!    re-publishes the entries older than `OUTBOX_GRACE_PERIOD` (younger ones belong to requests
//!    still in flight), then removes them. Consumers deduplicate by `event_id`, so publishing an
//!    entry twice (a crash after the publish but before the clean-up, two replicas' relays) is
//!    harmless.
//! 4. **Verify before publishing (no phantom).** On Redis a transaction whose etag check fails
//!    is not rolled back: the other operations, the outbox append included, are applied. So an
//!    entry may describe a change that never committed. Before publishing, the relay reads
//!    `task:{id}` and publishes only if the record lists the entry's `(version, event_id)`; an
//!    entry whose change is not in the record is discarded.
//! 5. **The other half of a partial transaction.** The reverse can also happen on Redis: the task
//!    write applies but the outbox append fails (a concurrent write moved the shard's etag). The
//!    handler therefore re-reads the task after any failed transaction: if the record carries
//!    its event id, the change did commit, and the handler appends the entry to the shard on its
//!    own before publishing. (A crash in exactly that window, after a partial transaction, is the
//!    one case this design cannot cover; with an atomic store such as the local sidecar it does
//!    not arise.)
//!
//! # Why not Dapr's built-in outbox
//!
//! Dapr's transactional outbox (`outboxPublishPubsub`/`outboxPublishTopic` on the state store)
//! allows one topic per state-store component, while task-api publishes four topics; it waits
//! about a second per message before forwarding it; it overwrites the CloudEvent id with its own
//! `outbox-<uuid>` (consumers deduplicate on our event id); and it publishes to its internal topic
//! before the transaction runs, so a failed transaction leaves an internal message that is
//! redelivered until its marker appears. Our own outbox keeps the CloudEvent id, the four topics
//! and the partition key, and publishes with the latency of one extra HTTP call.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use dapr_http::{DaprClient, DaprError, PublishOptions, SaveItem};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::model::{EventRef, TaskRecord};
use crate::store::{outbox_key, shard_of, task_key};

/// One recorded event waiting to be published.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub event_id: Uuid,
    pub task_id: Uuid,
    pub version: u64,
    pub topic: String,
    /// The `events::Envelope` exactly as it will be published: its JSON text, encoded once
    /// when the change is planned and sent as is.
    pub envelope: Box<RawValue>,
    #[serde(default)]
    pub traceparent: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

impl OutboxEntry {
    pub fn event_ref(&self) -> EventRef {
        EventRef {
            version: self.version,
            event_id: self.event_id,
        }
    }

    fn publish_options(&self) -> PublishOptions {
        PublishOptions {
            cloudevent_id: Some(self.event_id.to_string()),
            cloudevent_type: Some(self.topic.clone()),
            partition_key: Some(self.task_id.to_string()),
            traceparent: self.traceparent.clone(),
            ..PublishOptions::default()
        }
    }
}

/// The value of an `outbox:{n}` key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutboxShard {
    #[serde(default)]
    pub entries: Vec<OutboxEntry>,
}

/// What one relay pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub published: usize,
    pub discarded: usize,
    pub kept: usize,
}

/// Publishing and cleaning up outbox entries; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    dapr: DaprClient,
    store: String,
    pubsub: String,
    shards: u32,
    /// Published entries still in their shard, by shard.
    published: Arc<Mutex<BTreeMap<u32, HashSet<Uuid>>>>,
    /// One lock per shard, so that this process's writers of a shard take turns instead of
    /// racing on its etag: a lost race costs a failed transaction, a re-read and a backoff
    /// sleep, which under load was most of a request's time. The etag check stays; it is what
    /// keeps replicas (and anything else writing the shard) correct.
    shard_locks: Arc<[tokio::sync::Mutex<()>]>,
}

/// How often a shard rewrite is attempted before leaving the work to the next relay pass.
const SHARD_WRITE_ATTEMPTS: u32 = 10;

impl Outbox {
    pub fn new(dapr: DaprClient, store: String, pubsub: String, shards: u32) -> Self {
        Self {
            dapr,
            store,
            pubsub,
            shards,
            published: Arc::default(),
            shard_locks: (0..shards.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// Waits for this process's turn to write `shard`. Hold the guard from the read of the shard
    /// to the end of the write, and never while taking another shard's lock.
    pub async fn lock_shard(&self, shard: u32) -> tokio::sync::MutexGuard<'_, ()> {
        let index = shard as usize % self.shard_locks.len();
        self.shard_locks[index].lock().await
    }

    fn published_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, HashSet<Uuid>>> {
        self.published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Event ids of `shard` that were published but may still be in the shard.
    pub fn published_in(&self, shard: u32) -> HashSet<Uuid> {
        self.published_map()
            .get(&shard)
            .cloned()
            .unwrap_or_default()
    }

    /// These ids are no longer in `shard`.
    pub fn forget(&self, shard: u32, ids: &HashSet<Uuid>) {
        if ids.is_empty() {
            return;
        }
        let mut map = self.published_map();
        if let Some(set) = map.get_mut(&shard) {
            set.retain(|id| !ids.contains(id));
            if set.is_empty() {
                map.remove(&shard);
            }
        }
    }

    pub fn shard_of(&self, task_id: Uuid) -> u32 {
        shard_of(task_id, self.shards)
    }

    /// Publishes one entry.
    pub async fn publish(&self, entry: &OutboxEntry) -> Result<(), DaprError> {
        let body = Bytes::copy_from_slice(entry.envelope.get().as_bytes());
        self.dapr
            .publish_with(&self.pubsub, &entry.topic, body, entry.publish_options())
            .await
    }

    /// The fast path after a commit: publish now, then queue the entry for removal. A failed
    /// publish is left to the relay.
    pub async fn publish_committed(&self, entry: &OutboxEntry) {
        match self.publish(entry).await {
            Ok(()) => {
                metrics::counter!("task_api_events_published_total", "path" => "direct", "topic" => entry.topic.clone()).increment(1);
                self.published_map()
                    .entry(self.shard_of(entry.task_id))
                    .or_default()
                    .insert(entry.event_id);
            }
            Err(error) => {
                metrics::counter!("task_api_publish_failures_total").increment(1);
                tracing::warn!(%error, event_id = %entry.event_id, topic = %entry.topic,
                    "publish after commit failed; the outbox relay will retry");
            }
        }
    }

    /// Appends `entry` to its shard on its own (repair after a partial transaction).
    pub async fn append(&self, entry: &OutboxEntry) -> Result<(), DaprError> {
        let shard = self.shard_of(entry.task_id);
        self.rewrite_shard(shard, |s| {
            if s.entries.iter().any(|e| e.event_id == entry.event_id) {
                false
            } else {
                s.entries.push(entry.clone());
                true
            }
        })
        .await
    }

    /// Removes the given event ids from a shard.
    pub async fn remove(&self, shard: u32, ids: &HashSet<Uuid>) -> Result<(), DaprError> {
        self.rewrite_shard(shard, |s| {
            let before = s.entries.len();
            s.entries.retain(|e| !ids.contains(&e.event_id));
            s.entries.len() != before
        })
        .await
    }

    /// Etag-checked read-modify-write of one shard, retried on conflict.
    async fn rewrite_shard(
        &self,
        shard: u32,
        mut edit: impl FnMut(&mut OutboxShard) -> bool,
    ) -> Result<(), DaprError> {
        let key = outbox_key(shard);
        let _turn = self.lock_shard(shard).await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self
                .dapr
                .get_state::<OutboxShard>(&self.store, &key)
                .await?;
            let (mut value, etag) = match current {
                Some(entry) => (entry.value, entry.etag),
                None => (OutboxShard::default(), None),
            };
            if !edit(&mut value) {
                return Ok(());
            }
            let item = SaveItem::new(key.clone(), &value)?;
            let item = match etag {
                Some(etag) => item.etag(Some(etag)),
                None => item.first_write(),
            };
            match self.dapr.save_state(&self.store, &[item]).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_etag_conflict() && attempt < SHARD_WRITE_ATTEMPTS => {
                    tokio::time::sleep(crate::tasks::backoff(attempt)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Every `interval`, removes the published entries no transaction has removed yet, until
    /// `stop` turns true (a last sweep runs then). Whatever is missed, the relay cleans up.
    pub async fn run_cleaner(
        self,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = stop.changed() => true,
            };
            let pending: Vec<(u32, HashSet<Uuid>)> = self
                .published_map()
                .iter()
                .map(|(shard, ids)| (*shard, ids.clone()))
                .collect();
            for (shard, ids) in pending {
                match self.remove(shard, &ids).await {
                    Ok(()) => self.forget(shard, &ids),
                    Err(error) => tracing::warn!(%error, shard, count = ids.len(),
                        "could not remove published outbox entries; will retry"),
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// One relay pass over every shard.
    pub async fn relay_once(&self, grace: Duration) -> Result<RelayReport, DaprError> {
        let mut report = RelayReport::default();
        let cutoff =
            Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        for shard in 0..self.shards {
            let Some(current) = self
                .dapr
                .get_state::<OutboxShard>(&self.store, &outbox_key(shard))
                .await?
            else {
                continue;
            };
            let mut done = HashSet::new();
            for entry in &current.value.entries {
                if entry.recorded_at > cutoff {
                    report.kept += 1;
                    continue;
                }
                if self.committed(entry).await? {
                    self.publish(entry).await?;
                    metrics::counter!("task_api_events_published_total", "path" => "relay", "topic" => entry.topic.clone()).increment(1);
                    tracing::info!(event_id = %entry.event_id, topic = %entry.topic,
                        task_id = %entry.task_id, version = entry.version, "outbox relay published an event");
                    report.published += 1;
                } else {
                    metrics::counter!("task_api_outbox_discarded_total").increment(1);
                    tracing::warn!(event_id = %entry.event_id, topic = %entry.topic,
                        task_id = %entry.task_id, version = entry.version,
                        "outbox entry of a change that never committed; discarded");
                    report.discarded += 1;
                }
                done.insert(entry.event_id);
            }
            if !done.is_empty() {
                self.remove(shard, &done).await?;
            }
        }
        Ok(report)
    }

    /// Whether the change behind `entry` is in its task's record.
    async fn committed(&self, entry: &OutboxEntry) -> Result<bool, DaprError> {
        let record = self
            .dapr
            .get_state::<TaskRecord>(&self.store, &task_key(entry.task_id))
            .await?;
        Ok(match record {
            Some(record) => {
                let record = record.value;
                if record.has_committed(entry.event_ref()) {
                    true
                } else {
                    if record
                        .oldest_recorded_version()
                        .is_some_and(|oldest| entry.version < oldest)
                    {
                        tracing::error!(event_id = %entry.event_id, version = entry.version,
                            "outbox entry older than the task's recorded history; cannot prove it committed");
                    }
                    false
                }
            }
            // The task never existed (its creation did not commit) or its tombstone expired.
            None => false,
        })
    }

    /// Runs [`Outbox::relay_once`] now and every `interval` until `stop` resolves.
    pub async fn run_relay(
        self,
        interval: Duration,
        grace: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            match self.relay_once(grace).await {
                Ok(report) if report.published + report.discarded > 0 => {
                    tracing::info!(?report, "outbox relay pass");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "outbox relay pass failed; will retry"),
            }
        }
    }
}
