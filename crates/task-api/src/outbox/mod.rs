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
//!    `task:{id}`, the owner's index bucket and the outbox shard `outbox:{n}`
//!    (`n = fnv(task id) % OUTBOX_SHARDS`) with the event's envelope appended, every write
//!    etag-checked against one bulk read of the three keys ([`crate::repository`]). The record
//!    lists the `(version, event_id)` of its recent changes: [`Outbox::commit`] adds the entry's
//!    pair before the write, so whatever commits the change also names its event.
//! 2. **Publish right away.** [`Outbox::publish`] sends the envelope (CloudEvent id/type = event
//!    id/type, partition key = task id, the caller's `traceparent`) and notes the entry as
//!    published. A failed publish does not fail the request: the change is committed and the
//!    relay will publish it. Published entries leave their shard with the next transaction that
//!    writes that shard anyway, or, for a shard nobody writes, with a periodic sweep (one
//!    etag-checked write per shard): a separate removal per request would double the writes to
//!    the shard keys, which every request contends on.
//! 3. **Relay.** At start-up and every `OUTBOX_RELAY_INTERVAL`, the relay reads every shard and
//!    re-publishes the entries older than `OUTBOX_GRACE_PERIOD` (younger ones belong to requests
//!    still in flight), then removes them. Consumers deduplicate by `event_id`, so publishing an
//!    entry twice (a crash after the publish but before the clean-up, two replicas' relays) is
//!    harmless. This is what publishes the event of a process killed after its commit.
//! 4. **Verify before publishing (no phantom).** The transaction is not atomic: on Redis, and on
//!    the local sidecar's in-memory store, which copies it, an operation whose etag check fails
//!    does not undo the others (see [`crate::repository`]). So the outbox append may apply while
//!    the task write does not, and an entry may describe a change that never committed. Before
//!    publishing, the relay reads `task:{id}` and publishes only if the record lists the entry's
//!    `(version, event_id)`; an entry whose change is not in the record is discarded.
//! 5. **The other half of a partial transaction.** The reverse also happens: the task write
//!    applies but the outbox append does not (another replica moved the shard's etag). So after
//!    any failed transaction [`Outbox::commit`] reads the three keys again: if the record carries
//!    the event, the change did commit, and the entry is appended to the shard on its own (and
//!    the index repaired) before the change is reported committed. A crash in exactly that
//!    window, after such a partial transaction and before the append, is the one case this
//!    design cannot cover; Redis and the local sidecar alike can produce it.
//!
//! # Ordering, kept inside [`Outbox::commit`]
//!
//! * The writers of one shard in this process take turns (an in-process lock per shard) from
//!   the read to the end of the write, instead of racing on the shard's etag: a lost race costs
//!   a failed transaction, a re-read and a backoff sleep, which under load was most of a
//!   request's time. The etag checks stay; they keep replicas (and the relay) correct. The turn
//!   ends before the publish, the backoff sleep and the repair append, which takes its own.
//! * The ids pruned from the shard by a write are forgotten only once that write committed.
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
mod relay;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dapr_http::{DaprClient, DaprError, PublishOptions};
use uuid::Uuid;

use crate::repository::{TaskRepository, bucket_of};

pub use crate::repository::OutboxEntry;
pub use commit::{Commit, Committed, Plan};
pub use relay::RelayReport;

/// Recording, publishing and cleaning up task events; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    repository: TaskRepository,
    dapr: DaprClient,
    pubsub: String,
    shards: u32,
    /// Published entries still in their shard, by shard.
    published: Arc<Mutex<BTreeMap<u32, HashSet<Uuid>>>>,
    /// One lock per shard: this process's writers of a shard take turns (see the module doc).
    shard_locks: Arc<[tokio::sync::Mutex<()>]>,
}

impl Outbox {
    /// An outbox over `shards` shard keys of `repository`, publishing to `pubsub`.
    pub fn new(repository: TaskRepository, dapr: DaprClient, pubsub: String, shards: u32) -> Self {
        Self {
            repository,
            dapr,
            pubsub,
            shards,
            published: Arc::default(),
            shard_locks: (0..shards.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    fn shard_of(&self, task_id: Uuid) -> u32 {
        bucket_of(task_id, self.shards)
    }

    /// Waits for this process's turn to write `shard`. Held from the read of the shard to the
    /// end of the write, and never while taking another shard's lock.
    async fn lock_shard(&self, shard: u32) -> tokio::sync::MutexGuard<'_, ()> {
        let index = shard as usize % self.shard_locks.len();
        self.shard_locks[index].lock().await
    }

    fn published_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, HashSet<Uuid>>> {
        self.published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Event ids of `shard` that were published but may still be in the shard.
    fn published_in(&self, shard: u32) -> HashSet<Uuid> {
        self.published_map()
            .get(&shard)
            .cloned()
            .unwrap_or_default()
    }

    /// These ids are no longer in `shard`.
    fn forget(&self, shard: u32, ids: &HashSet<Uuid>) {
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

    /// Appends `entry` to its shard on its own (the repair after a partial transaction).
    async fn append(&self, entry: &OutboxEntry) -> Result<(), DaprError> {
        let shard = self.shard_of(entry.task_id);
        let _turn = self.lock_shard(shard).await;
        self.repository
            .rewrite_outbox_shard(shard, |s| {
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
    async fn remove(&self, shard: u32, ids: &HashSet<Uuid>) -> Result<(), DaprError> {
        let _turn = self.lock_shard(shard).await;
        self.repository
            .rewrite_outbox_shard(shard, |s| {
                let before = s.entries.len();
                s.entries.retain(|e| !ids.contains(&e.event_id));
                s.entries.len() != before
            })
            .await
    }
}
