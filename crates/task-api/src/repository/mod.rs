//! The task repository: every state key task-api owns, and every read and write of them.
//!
//! Keys (named only in `keys.rs`; the sidecar prefixes each with the app id, so no other service
//! sees them):
//! * `task:{id}`: the [`TaskRecord`], the source of truth. A deleted task stays as a tombstone
//!   for `TOMBSTONE_TTL`, so the outbox relay can still prove that its `task-deleted` event
//!   committed;
//! * `user:{user_id}:tasks:{b}` and `user:{user_id}:tasks:{b}:{segment}`: the heads and sealed
//!   segments of the buckets of the user's index ([`index`]), a projection of the task records
//!   written off the request path ([`projection`]);
//! * `user:{user_id}:open:{n}`: the user's open-task slots ([`limit`]);
//! * `outbox:{instance}:e{seq}`: one outbox entry each, written in its change's transaction
//!   ([`outbox_shard`]); `outbox:{instance}:{n}` and `outbox:{n}`, the shards of earlier layouts,
//!   only ever drained;
//! * `outbox-instances`, `outbox-lease:{instance}` and `outbox-range:{instance}`: the outbox
//!   writers, their leases and the event numbers each may have used ([`instances`]).
//!
//! Reads come in the shapes callers need, each one request: a task (all a change is checked
//! against, [`ChangeState`]); the heads of a user's index buckets, or some of their sealed
//! segments (a bulk read each); a page of records (a bulk read); a user's slots.
//!
//! Every write is ETag-checked against what was read (the etag `-1`, which only an absent key
//! accepts, for a key that should not exist), so a concurrent writer makes it fail instead of
//! being overwritten. A change is one state transaction, but **not an atomic one**: on Redis
//! the transaction is one `MULTI`/`EXEC` (components-contrib `state/redis/redis.go`,
//! `StateStore.Multi`), and Redis does not roll back, so when one operation's etag check fails
//! the others still apply and daprd answers 500. The local sidecar's in-memory store copies
//! that behaviour. After a failed transaction any subset of its writes may be in the store;
//! callers find out by reading again (how the outbox copes is explained in [`crate::outbox`]).
//! Nothing in this crate assumes a transaction is atomic.
//!
//! The layout of this release (slots, a projected index, no index key in a change's
//! transaction) reads every record, head and segment earlier releases wrote, but replicas of an
//! earlier release must not share a store with it: they would keep writing the index in their
//! transactions and ignore the slots.

mod change;
pub mod index;
pub mod instances;
mod keys;
pub mod limit;
pub mod outbox_shard;
pub mod projection;
mod slots;
mod undo;

use std::time::Duration;

use dapr_http::{DaprClient, DaprError, SaveItem};
use rand::Rng;
use uuid::Uuid;

use crate::error::ApiError;
use crate::model::TaskRecord;

pub use change::{ChangeState, ReadBack};
pub use index::{IndexSegment, SealedRef, TaskSummary, UserIndex};
pub use instances::{DELETE_BATCH, EventRange, Instance};
pub use keys::{
    INDEX_BUCKETS, bucket_of, legacy_outbox_key, outbox_event_key, outbox_key, outbox_range_key,
    slot_key,
};
pub use limit::OpenTaskLimit;
pub use outbox_shard::{OutboxEntry, OutboxShard};
pub use slots::SlotUse;

/// The etag of a write that must create its key: an integer no stored version equals (they
/// count up from 1), so an existing key refuses it and an absent one accepts it, inside a
/// transaction too (components-contrib `state/redis/redis.go`, the set script behind
/// `setValue`).
pub const CREATE_ONLY_ETAG: &str = "-1";

/// What a read or write of the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Dapr(#[from] DaprError),
    #[error("state key `{key}` is unreadable: {source}")]
    Unreadable {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The store failed on one key of a bulk read.
    #[error("reading `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("bulk get returned too few items")]
    ShortBulkRead,
    /// Other writers won the race for the same keys `CONFLICT_RETRIES` times in a row.
    #[error("too many concurrent changes to the same keys")]
    Contention,
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Dapr(error) => ApiError::Dapr(error),
            StoreError::Contention => ApiError::Contention,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A value as read, with the etag its next write is checked against (`None`: the key did not
/// exist).
#[derive(Debug, Clone, Default)]
struct Versioned<T> {
    value: T,
    etag: Option<String>,
}

impl<T> Versioned<T> {
    /// A write of `value` to `key` that succeeds only if the key is still as read.
    fn write(&self, key: String, value: &impl serde::Serialize) -> Result<SaveItem, DaprError> {
        let item = SaveItem::new(key, value)?;
        Ok(match &self.etag {
            Some(etag) => item.etag(Some(etag.clone())),
            None => item.first_write(),
        })
    }

    /// Like [`Self::write`], inside a transaction, where `first-write` is not enforced on
    /// Redis: an absent key is written with [`CREATE_ONLY_ETAG`].
    fn write_in_transaction(
        &self,
        key: String,
        value: &impl serde::Serialize,
    ) -> Result<SaveItem, DaprError> {
        let etag = self.etag.as_deref().unwrap_or(CREATE_ONLY_ETAG);
        Ok(SaveItem::new(key, value)?.etag(Some(etag)))
    }
}

/// Jittered exponential backoff after a lost race: up to 2, 4, 8 … 128 ms.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 2u64 << attempt.min(6);
    Duration::from_micros(rand::rng().random_range(200..=cap * 1000))
}

/// How big an index bucket's head may grow (`INDEX_HEAD_SIZE`) before its oldest
/// `segment_size` summaries (`INDEX_SEGMENT_SIZE`) are sealed into a segment. Not part of the
/// stored layout: each head's directory says where its summaries are, so the sizes may change
/// between releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexLayout {
    pub head_size: usize,
    pub segment_size: usize,
}

impl Default for IndexLayout {
    fn default() -> Self {
        Self {
            head_size: 64,
            segment_size: 48,
        }
    }
}

/// Reads and writes of task-api's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskRepository {
    dapr: DaprClient,
    store: String,
    tombstone_ttl: Duration,
    conflict_retries: u32,
    layout: IndexLayout,
    limit: OpenTaskLimit,
}

/// `MAX_OPEN_TASKS_PER_USER`'s default.
pub const DEFAULT_MAX_OPEN_TASKS: u32 = 10_000;

impl TaskRepository {
    /// `conflict_retries` bounds the attempts of one change (`CONFLICT_RETRIES`). The index
    /// layout and the open-task limit are the defaults until [`Self::with_index`].
    pub fn new(
        dapr: DaprClient,
        store: String,
        tombstone_ttl: Duration,
        conflict_retries: u32,
    ) -> Self {
        Self {
            dapr,
            store,
            tombstone_ttl,
            conflict_retries,
            layout: IndexLayout::default(),
            limit: OpenTaskLimit::new(DEFAULT_MAX_OPEN_TASKS),
        }
    }

    /// The same repository with this index layout and open-task limit.
    pub fn with_index(mut self, layout: IndexLayout, limit: OpenTaskLimit) -> Self {
        self.layout = layout;
        self.limit = limit;
        self
    }

    /// The per-user open-task limit.
    pub fn limit(&self) -> OpenTaskLimit {
        self.limit
    }

    /// After attempt number `attempt` of a change lost a race: sleeps a jittered backoff, or
    /// gives up with [`StoreError::Contention`] when the attempts are used up.
    pub async fn back_off(&self, attempt: u32) -> Result<(), StoreError> {
        if attempt >= self.conflict_retries {
            return Err(StoreError::Contention);
        }
        tokio::time::sleep(backoff(attempt)).await;
        Ok(())
    }

    /// A task's record, tombstones included.
    pub async fn get(&self, task_id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
        let entry = self
            .dapr
            .get_state::<TaskRecord>(&self.store, &keys::task_key(task_id))
            .await?;
        Ok(entry.map(|entry| entry.value))
    }

    /// The heads of a user's index buckets, in bucket order (a missing head reads as empty).
    pub async fn heads(&self, user_id: Uuid) -> Result<Vec<UserIndex>, StoreError> {
        let heads = self
            .dapr
            .get_bulk_state::<UserIndex>(&self.store, &keys::index_keys(user_id))
            .await?;
        if heads.len() != keys::INDEX_BUCKETS as usize {
            return Err(StoreError::ShortBulkRead);
        }
        heads
            .into_iter()
            .map(|head| match head.error {
                Some(message) => Err(StoreError::Key {
                    key: head.key,
                    message,
                }),
                None => Ok(head.value.unwrap_or_default()),
            })
            .collect()
    }

    /// The sealed segments `(bucket, segment)` of a user's index, in the order asked (a missing
    /// segment reads as empty).
    pub async fn segments(
        &self,
        user_id: Uuid,
        wanted: &[(u32, Uuid)],
    ) -> Result<Vec<IndexSegment>, StoreError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = wanted
            .iter()
            .map(|(bucket, segment)| keys::index_segment_key(user_id, *bucket, *segment))
            .collect();
        let segments = self
            .dapr
            .get_bulk_state::<IndexSegment>(&self.store, &keys)
            .await?;
        if segments.len() != keys.len() {
            return Err(StoreError::ShortBulkRead);
        }
        segments
            .into_iter()
            .map(|segment| match segment.error {
                Some(message) => Err(StoreError::Key {
                    key: segment.key,
                    message,
                }),
                None => Ok(segment.value.unwrap_or_default()),
            })
            .collect()
    }

    /// The records of `ids` that exist and could be read, in the order of `ids`.
    pub async fn records(&self, ids: &[Uuid]) -> Result<Vec<TaskRecord>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| keys::task_key(*id)).collect();
        let records = self
            .dapr
            .get_bulk_state::<TaskRecord>(&self.store, &keys)
            .await?;
        Ok(records.into_iter().filter_map(|item| item.value).collect())
    }

    /// The entries of the outbox shard `key` (`None`: the key does not exist).
    pub async fn outbox_shard(&self, key: &str) -> Result<Option<OutboxShard>, StoreError> {
        let entry = self.dapr.get_state::<OutboxShard>(&self.store, key).await?;
        Ok(entry.map(|entry| entry.value))
    }

    /// Etag-checked read-modify-write of the outbox shard `key`, retried on conflict up to
    /// `CONFLICT_RETRIES` times. `edit` returns whether it changed anything; nothing is written
    /// when it did not. With `delete_empty`, a shard left without entries is deleted (etag-checked)
    /// instead of written. Returns whether the key exists afterwards.
    pub async fn rewrite_outbox_shard(
        &self,
        key: &str,
        delete_empty: bool,
        mut edit: impl FnMut(&mut OutboxShard) -> bool,
    ) -> Result<bool, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(entry) = self.dapr.get_state::<OutboxShard>(&self.store, key).await? else {
                let mut empty = OutboxShard::default();
                if !edit(&mut empty) || (delete_empty && empty.entries.is_empty()) {
                    return Ok(false);
                }
                // Only an append reaches here; it creates the key.
                let item = Versioned::<OutboxShard>::default().write(key.to_owned(), &empty)?;
                match self.dapr.save_state(&self.store, &[item]).await {
                    Ok(()) => return Ok(true),
                    Err(error) if error.is_write_conflict() || error.is_transient() => {
                        self.back_off(attempt).await?;
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                }
            };
            let mut current = Versioned {
                value: entry.value,
                etag: entry.etag,
            };
            if !edit(&mut current.value) {
                return Ok(true);
            }
            let written = if delete_empty && current.value.entries.is_empty() {
                self.dapr
                    .delete_state(&self.store, key, current.etag.as_deref())
                    .await
                    .map(|()| false)
            } else {
                let item = current.write(key.to_owned(), &current.value)?;
                self.dapr
                    .save_state(&self.store, &[item])
                    .await
                    .map(|()| true)
            };
            match written {
                Ok(exists) => return Ok(exists),
                Err(error) if error.is_write_conflict() || error.is_transient() => {
                    self.back_off(attempt).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}
