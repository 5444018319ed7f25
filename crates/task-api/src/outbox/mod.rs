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
//! 1. **Record in the same transaction, under a key of its own.** A change is one read of
//!    `task:{id}` (none for a create: its fresh id names nothing yet) and one state transaction
//!    that writes the record etag-checked (create-only for a create), the event's entry under a
//!    fresh per-event key `outbox:{instance}:e{seq}` (`first-write`), and, for a change that
//!    opens a task, an open-task slot create-only (`crate::repository::limit`). No index key:
//!    the index is projected afterwards (step 2). The record lists the `(version, event_id)` of
//!    its recent changes: [`Outbox::commit`] adds the entry's pair before the write, so whatever
//!    commits the change also names its event.
//! 2. **Publish right away.** [`Outbox::publish`] sends the envelope (CloudEvent id/type = event
//!    id/type, partition key = task id, the caller's `traceparent`). A failed publish does not
//!    fail the request: the change is committed and the relay will publish it. The process
//!    keeps what it knows of each entry it wrote in memory (`book.rs`); every
//!    `INDEX_PROJECTION_INTERVAL` (250 ms) the cleaner, off the requests' path, projects the
//!    committed changes into their owners' index (`crate::repository::projection`), releases
//!    the slots of closed tasks, and deletes the keys of the entries that are both published and
//!    projected (and of those whose change did not commit) in one transaction. Until then this
//!    process's lists show the change from the book ([`Outbox::unprojected`]).
//! 3. **Relay.** Every `OUTBOX_RELAY_INTERVAL` the relay publishes this process's own entries
//!    older than `OUTBOX_GRACE_PERIOD` (counted from their write) that are not known published
//!    and whose write has ended (a write runs in a task of its own, which a client hanging up
//!    does not stop; the relay never judges one still running), and drains the keys of writers whose lease ended. Consumers
//!    deduplicate by `event_id`, so publishing an entry twice is harmless. This is what
//!    publishes the event of a process killed after its commit. A pass never stops at a
//!    failure: what cannot be checked or published stays for the next pass (`relay.rs`).
//! 4. **Verify before publishing (no phantom).** The transaction is not atomic: on Redis, and on
//!    the local sidecar's in-memory store, which copies it, an operation whose etag check fails
//!    does not undo the others (see [`crate::repository`]). So the entry may be written while the
//!    task write is not. The writer knows the outcome (its transaction succeeded, or a read after
//!    it failed shows whether the record lists the event) and acts on it; a replica draining a
//!    dead writer's keys reads `task:{id}` and publishes only if the record lists the entry's
//!    `(version, event_id)`, discards the entry if the record proves it did not commit, and keeps
//!    it unpublished (logged as an error) when the record's bounded history no longer reaches
//!    back to it (a writer that died right after a commit, and a task changed 64 times before
//!    its lease ran out).
//! 5. **The partial transaction that commits the task but not the entry** (the entry write
//!    refused by the store): the writer reads the record after the failure, finds the event in
//!    it, and from then on the event is published whatever the store does: the entry is held in
//!    memory as committed and published, and written to its key (retried with backoff) so a
//!    replica publishes it if this process dies first. Only a store that refuses that write for
//!    `CONFLICT_RETRIES` attempts *and* a process that dies before the publish lose it.
//!
//! # Writers own their keys
//!
//! Each process writes only keys named after an instance id it takes at start-up, and holds a
//! lease on that id (`outbox-lease:{instance}`, renewed every quarter of `OUTBOX_LEASE_TTL`)
//! listed in the registry `outbox-instances` (`lease.rs`). Event numbers are taken from an
//! in-process counter; before a number past the reserved range is used, the range
//! `outbox-range:{instance}` (`[low, high)`) is raised by a block of 1,024 (half-way through a
//! block, in the background), and the cleaner raises `low` as keys are deleted. So a replica
//! that finds a writer whose lease ended reads exactly the keys its range names, publishes what
//! committed, discards what did not, deletes them, the range and the registration. A process
//! that could not renew in time never writes under that id again and takes a new one.
//!
//! What this process has recorded and not yet published, or published and not yet projected
//! into the index, is bounded: past [`OUTBOX_BUDGET_BYTES`] of envelopes (the broker has taken
//! nothing for a while, or the index cannot be written), changes are refused with 503
//! `unavailable` until the relay has published some or the cleaner has projected them.
//!
//! # Why per-event keys (measured)
//!
//! The earlier layout appended each event to one of 16 shard keys per process inside the
//! transaction: the change read the shard with the task and the head, rewrote the whole shard
//! (every unpublished entry in it) against its etag, and the writers of a shard took turns under
//! an in-process lock from the read to the end of the write, so 16 shards were 16 serialisation
//! points for the whole process, and clean-up rode on later writes of the same shard. A
//! per-event key needs no read, no etag and no turn: concurrent changes of different tasks share
//! nothing in this process but a counter. The clean-up costs one batched delete per 250 ms, and
//! the range one write per 1,024 events. The README's benchmark section has the numbers.
//!
//! # Why the index left the transaction
//!
//! Until this layout, every change also wrote its owner's index bucket head against its etag.
//! That head was what ordered writers: two changes of one user landing in one of the 16
//! buckets could not both commit from one read, which kept the per-bucket open-task count
//! exact, but it cost a bulk read before every change, and writers of one (user, bucket) took
//! turns in-process (a lost race costs a failed transaction whose task write may still have
//! applied, a repair, a re-read and a backoff), so one user's burst serialised. Now:
//!
//! * **the index is a projection** settled by the cleaner from the committed entries, grouped
//!   by bucket, taken from the records read after the heads, written etag-checked, before the
//!   entries' keys are deleted (a crash in between leaves the keys, and the relay's drain
//!   projects them the same way). Another replica's list lags by one cleaner pass; the writing
//!   replica shows its own changes at once (`crate::listing`);
//! * **the open-task limit is held by slots**: a change that opens a task takes one of the
//!   user's `max` slot keys create-only in its own transaction, so the bound is exact across
//!   replicas with no read and no turn (`crate::repository::limit`);
//! * a change of an existing task still reads its record (for `If-Match`, the merge, and the
//!   etag its write is checked against): two changes of one task cannot both commit from one
//!   read, and the loser retries on a fresh read.
//!
//! So a create is one transaction and one publish, and an update, completion or deletion one
//! read more; nothing is serialised per user or per process. The README's benchmark section
//! has the numbers. Replicas of an earlier release must not share a store with this one (they
//! write the index in their transactions and ignore the slots).
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

mod book;
mod commit;
mod lease;
mod relay;
mod sequence;
mod upkeep;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dapr_http::{DaprClient, DaprError, PublishOptions};

use crate::repository::limit::SlotHints;
use crate::repository::{TaskRepository, TaskSummary};

pub use crate::repository::OutboxEntry;
pub use commit::{Commit, Committed, Plan};
pub use relay::RelayReport;

use book::Book;
use lease::Lease;
use sequence::Sequence;

/// The outbox lease's TTL when none is configured (`OUTBOX_LEASE_TTL`).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// When the events this process recorded and has not published yet (the broker has taken
/// nothing for a while) pass this many bytes of JSON, changes are refused with 503 instead of
/// piling up more. Published changes the index does not have yet count a small fixed share
/// each (`book.rs`), so an index that cannot be written is bounded too.
pub const OUTBOX_BUDGET_BYTES: usize = 1 << 20;

/// Recording, publishing and cleaning up task events; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    repository: TaskRepository,
    dapr: DaprClient,
    pubsub: String,
    /// How many shards of the earlier `outbox:{n}` layout to drain.
    shards: u32,
    lease: Arc<Lease>,
    /// The entries this process wrote and has not deleted yet, with what it knows of each.
    book: Arc<Mutex<Book>>,
    /// The event numbers of this process's current writer id.
    sequence: Arc<Mutex<Sequence>>,
    /// Writes of the event range take turns, so a slower one never lowers `high`.
    range_turn: Arc<tokio::sync::Mutex<()>>,
    /// Where each user's next open-task slot is tried first.
    slot_hints: Arc<SlotHints>,
    /// How many slot releases this process has completed, so a create that found no free slot
    /// knows whether one may have been freed since it looked.
    slot_releases: Arc<AtomicU64>,
}

impl Outbox {
    /// An outbox of `repository`, publishing to `pubsub`, with the default lease TTL; `shards`
    /// is how many `outbox:{n}` shards of the earliest layout it drains (`OUTBOX_SHARDS`).
    pub fn new(repository: TaskRepository, dapr: DaprClient, pubsub: String, shards: u32) -> Self {
        Self::with_lease_ttl(repository, dapr, pubsub, shards, DEFAULT_LEASE_TTL)
    }

    /// Like [`Outbox::new`], with the writer lease's TTL (`OUTBOX_LEASE_TTL`): how long after
    /// this process dies other replicas take over its entries.
    pub fn with_lease_ttl(
        repository: TaskRepository,
        dapr: DaprClient,
        pubsub: String,
        shards: u32,
        lease_ttl: Duration,
    ) -> Self {
        let lease = Lease::new(repository.clone(), lease_ttl);
        let sequence = Sequence::new(lease.initial_id());
        Self {
            lease: Arc::new(lease),
            repository,
            dapr,
            pubsub,
            shards: shards.max(1),
            book: Arc::default(),
            sequence: Arc::new(Mutex::new(sequence)),
            range_turn: Arc::default(),
            slot_hints: Arc::default(),
            slot_releases: Arc::default(),
        }
    }

    /// The changes of `user_id`'s tasks this process committed and has not projected into the
    /// index yet: each task's latest summary (`None`: deleted). A list shows them over the
    /// index, so a client sees its own changes at once.
    pub fn unprojected(&self, user_id: uuid::Uuid) -> HashMap<uuid::Uuid, Option<TaskSummary>> {
        self.unprojected_of(user_id)
            .into_iter()
            .map(|(task, (_, summary))| (task, summary))
            .collect()
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sequence(&self) -> std::sync::MutexGuard<'_, Sequence> {
        self.sequence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
}
