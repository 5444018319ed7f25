//! The outbox: a committed task change always produces its event, and only committed changes
//! do, even if the process dies between the state write and the publish.
//!
//! # Use
//!
//! One call per change, then one to publish it:
//!
//! ```text
//! match outbox.commit(task_id, user_id, |current| plan(current)).await? {
//!     Commit::Unchanged(record) => record,
//!     Commit::Committed(committed) => outbox.publish(committed).await,
//! }
//! ```
//!
//! The planner sees the task's current record (`None`: no such task) and answers
//! [`Plan::Unchanged`] or [`Plan::Change`] with the new record and its event's [`OutboxEntry`].
//! It may run several times: once per attempt, each time on a fresh read.
//!
//! # Mechanism
//!
//! 1. **Record in the same transaction.** A change is one state transaction that writes
//!    `task:{id}`, the owner's index bucket (its head, and for an older task the sealed segment
//!    holding its summary) and this process's outbox shard
//!    `outbox:{instance}:{n}` (`n = fnv(task id) % OUTBOX_SHARDS`) with the event's envelope
//!    appended, every write etag-checked against one bulk read of the three keys (and a read of
//!    the segment when there is one, see [`crate::repository`]). The record lists the `(version, event_id)` of its recent changes:
//!    [`Outbox::commit`] adds the entry's pair before the write, so whatever commits the change
//!    also names its event.
//! 2. **Publish right away.** [`Outbox::publish`] sends the envelope (CloudEvent id/type = event
//!    id/type, partition key = task id, the caller's `traceparent`). A failed publish does not
//!    fail the request: the change is committed and the relay will publish it. What the process
//!    learns about an entry (published; or committed but not published) is written into its
//!    shard by the next transaction that writes the shard anyway, or, for a shard nobody writes,
//!    by a sweep every second: a separate write per request would double the writes on the hot
//!    path. Published entries leave the shard that way; committed ones are marked `committed`.
//! 3. **Relay.** At start-up and every `OUTBOX_RELAY_INTERVAL`, the relay reads the shards and
//!    re-publishes the entries older than `OUTBOX_GRACE_PERIOD` (younger ones belong to requests
//!    still in flight), then removes them. Consumers deduplicate by `event_id`, so publishing an
//!    entry twice (a crash after the publish but before the clean-up) is harmless. This is what
//!    publishes the event of a process killed after its commit. A pass never stops at a
//!    failure: what cannot be checked or published stays for the next pass, and the pass goes
//!    on (`relay.rs`).
//! 4. **Verify before publishing (no phantom).** The transaction is not atomic: on Redis, and on
//!    the local sidecar's in-memory store, which copies it, an operation whose etag check fails
//!    does not undo the others (see [`crate::repository`]). So the outbox append may apply while
//!    the task write does not, and an entry may describe a change that never committed. An
//!    entry marked `committed` by its writer is published as is; for any other, the relay reads
//!    `task:{id}` and publishes only if the record lists the entry's `(version, event_id)`,
//!    discards it if the record proves it did not commit, and keeps it unpublished (logged as an
//!    error) when the record's bounded history no longer reaches back to it. Writers mark their
//!    entries within a second, so only a writer that died right after a commit leaves unmarked
//!    entries, and its task would have to change 64 times before the lease ran out.
//!
//! # Writers own their shards
//!
//! Each process writes only its own shards, named after an instance id it takes at start-up,
//! and holds a lease on that id (`outbox-lease:{instance}`, renewed every quarter of
//! `OUTBOX_LEASE_TTL`) listed in the registry `outbox-instances` (`lease.rs`). So no other replica
//! ever moves the etag of a shard while its writer lives, and within the process the writers
//! of a shard take turns: the shard operation of a transaction always finds the etag it read.
//! The one failure a transaction can still have on the shard is the store itself failing, and
//! then (as after any failed transaction) [`Outbox::commit`] reads the three keys again under
//! the same turn: if the record carries the event, the change did commit, and the entry is
//! written to the shard on its own, marked committed, before the change is reported committed;
//! that write is retried with backoff up to `CONFLICT_RETRIES` times. A store that refuses all
//! of those fails the request and loses that one event: the only window left, and it needs the
//! store to fail part of a transaction on this very shard and then keep failing for seconds. A writer whose lease has ended is gone: every other
//! replica's relay drains its shards (publishing what committed, discarding what did not),
//! deletes them and unregisters it. A process that could not renew in time never writes under
//! that id again and takes a new one, so a shard never has two writers.
//!
//! The shard a change writes is bounded: once its stored JSON passes [`SHARD_BUDGET_BYTES`]
//! (the broker has taken nothing for a while), changes landing on it are refused with 503
//! `unavailable` until the relay has drained it, instead of growing it until every write of it
//! exceeds the sidecar's 4 MiB request limit.
//!
//! # Ordering, kept inside [`Outbox::commit`]
//!
//! * The writers of one shard in this process take turns (an in-process lock per shard) from
//!   the read to the end of the write, instead of racing on the shard's etag: a lost race costs
//!   a failed transaction, a re-read and a backoff sleep. The turn ends before the publish and
//!   the backoff sleep.
//! * The marks applied to the shard by a write are forgotten only once that write committed.
//! * After a failed transaction the keys are read again before the turn ends, so the outcome
//!   (committed, lost a race, or a store failure) is judged on what that attempt left.
//!
//! # Why not Dapr's built-in outbox
//!
//! Dapr's transactional outbox (`outboxPublishPubsub`/`outboxPublishTopic` on the state store,
//! <https://docs.dapr.io/developing-applications/building-blocks/state-management/howto-outbox/>)
//! allows one topic per state-store component, while task-api publishes four topics. In daprd
//! (`pkg/runtime/pubsub/outbox.go`) `PublishInternal` publishes to its internal topic before the
//! transaction runs, with the CloudEvent id replaced by its own `outbox-<uuid>` (consumers
//! deduplicate on our event id), so a failed transaction leaves an internal message that is
//! redelivered until its marker appears; and `SubscribeToInternalTopics` sleeps a second per
//! message before forwarding it. Our own outbox keeps the CloudEvent id, the four topics and the
//! partition key, and publishes with the latency of one extra HTTP call.

mod commit;
mod lease;
mod relay;
mod upkeep;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dapr_http::{DaprClient, DaprError, PublishOptions};
use uuid::Uuid;

use crate::repository::{TaskRepository, bucket_of, outbox_key};

pub use crate::repository::OutboxEntry;
pub use commit::{Commit, Committed, Plan};
pub use relay::RelayReport;

use lease::Lease;

/// The outbox lease's TTL when none is configured (`OUTBOX_LEASE_TTL`).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// A shard whose stored JSON is larger than this takes no new entries: the change is refused
/// with 503 until the relay has published (and removed) some. Every write of a shard sends all of
/// it, and the sidecar refuses requests over 4 MiB (daprd's `--max-body-size` default), so an
/// unbounded shard would end up failing every change that lands on it.
pub const SHARD_BUDGET_BYTES: usize = 1 << 20;

/// One of this process's shards: the writer id it was written under and its number.
type ShardId = (Uuid, u32);

/// What this process knows about entries still in one of its shards.
#[derive(Debug, Default)]
struct Marks {
    /// Published; the next write of the shard removes them.
    published: HashSet<Uuid>,
    /// Committed; the next write of the shard marks them so.
    committed: HashSet<Uuid>,
}

impl Marks {
    fn is_empty(&self) -> bool {
        self.published.is_empty() && self.committed.is_empty()
    }
}

/// Recording, publishing and cleaning up task events; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    repository: TaskRepository,
    dapr: DaprClient,
    pubsub: String,
    shards: u32,
    lease: Arc<Lease>,
    /// What the next write of each of this process's shards should record, by shard.
    marks: Arc<Mutex<BTreeMap<ShardId, Marks>>>,
    /// One lock per shard: this process's writers of a shard take turns (see the module doc).
    shard_locks: Arc<[tokio::sync::Mutex<()>]>,
}

impl Outbox {
    /// An outbox over `shards` shard keys of `repository`, publishing to `pubsub`, with the
    /// default lease TTL.
    pub fn new(repository: TaskRepository, dapr: DaprClient, pubsub: String, shards: u32) -> Self {
        Self::with_lease_ttl(repository, dapr, pubsub, shards, DEFAULT_LEASE_TTL)
    }

    /// Like [`Outbox::new`], with the writer lease's TTL (`OUTBOX_LEASE_TTL`): how long after
    /// this process dies other replicas take over its shards.
    pub fn with_lease_ttl(
        repository: TaskRepository,
        dapr: DaprClient,
        pubsub: String,
        shards: u32,
        lease_ttl: Duration,
    ) -> Self {
        let shards = shards.max(1);
        Self {
            lease: Arc::new(Lease::new(repository.clone(), lease_ttl, shards)),
            repository,
            dapr,
            pubsub,
            shards,
            marks: Arc::default(),
            shard_locks: (0..shards).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    fn shard_of(&self, task_id: Uuid) -> u32 {
        bucket_of(task_id, self.shards)
    }

    /// Waits for this process's turn to write its shard `shard`. Held from the read of the shard
    /// to the end of the write, and never while taking another shard's lock.
    async fn lock_shard(&self, shard: u32) -> tokio::sync::MutexGuard<'_, ()> {
        let index = shard as usize % self.shard_locks.len();
        self.shard_locks[index].lock().await
    }

    fn marks(&self) -> std::sync::MutexGuard<'_, BTreeMap<ShardId, Marks>> {
        self.marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes that `event_id`, in shard `shard`, was published (`published`) or committed.
    fn mark(&self, shard: ShardId, event_id: Uuid, published: bool) {
        let mut marks = self.marks();
        let entry = marks.entry(shard).or_default();
        if published {
            entry.published.insert(event_id);
        } else {
            entry.committed.insert(event_id);
        }
    }

    /// Applies what is known about `shard`'s entries to `pending`: removes the published ones,
    /// marks the committed ones. Returns the ids it used, to [`Outbox::forget`] once written.
    fn apply_marks(
        &self,
        shard: ShardId,
        pending: &mut Vec<OutboxEntry>,
    ) -> (HashSet<Uuid>, HashSet<Uuid>) {
        let (published, committed) = match self.marks().get(&shard) {
            Some(marks) => (marks.published.clone(), marks.committed.clone()),
            None => return (HashSet::new(), HashSet::new()),
        };
        pending.retain(|e| !published.contains(&e.event_id));
        for entry in pending.iter_mut() {
            if committed.contains(&entry.event_id) {
                entry.committed = true;
            }
        }
        (published, committed)
    }

    /// These marks are now in the store.
    fn forget(&self, shard: ShardId, (published, committed): &(HashSet<Uuid>, HashSet<Uuid>)) {
        if published.is_empty() && committed.is_empty() {
            return;
        }
        let mut map = self.marks();
        if let Some(marks) = map.get_mut(&shard) {
            marks.published.retain(|id| !published.contains(id));
            marks.committed.retain(|id| !committed.contains(id));
            if marks.is_empty() {
                map.remove(&shard);
            }
        }
    }

    /// Sends one entry to the broker.
    async fn send(&self, entry: &OutboxEntry) -> Result<(), DaprError> {
        let body = Bytes::copy_from_slice(entry.envelope.get().as_bytes());
        let options = PublishOptions {
            cloudevent_id: Some(entry.event_id.to_string()),
            cloudevent_type: Some(entry.topic.clone()),
            partition_key: Some(entry.task_id.to_string()),
            traceparent: entry.traceparent.clone(),
            ..PublishOptions::default()
        };
        self.dapr
            .publish_with(&self.pubsub, &entry.topic, body, options)
            .await
    }

    /// The store key of this process's shard.
    fn key_of((instance, shard): ShardId) -> String {
        outbox_key(instance, shard)
    }
}
