//! The state one change of a task is checked against, and the transaction that writes it.

use dapr_http::{DaprError, SaveItem, TransactionOp};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::index::{IndexSegment, UserIndex, reconcile};
use super::keys::{INDEX_BUCKETS, bucket_of, index_key, index_segment_key, task_key};
use super::outbox_shard::{OutboxEntry, OutboxShard};
use super::{StoreError, TaskRepository, Versioned};
use crate::model::TaskRecord;

/// What a change of one task reads: in one bulk request the task's record and the head of its
/// bucket of the owner's index, and, only when the task's summary lives in a sealed segment (an
/// older task), that segment in a second request; each with the etag its write is checked
/// against. The outbox entry is not read: it has a fresh key of its own.
#[derive(Debug)]
pub struct ChangeState {
    /// `task:{id}` and the index bucket's head, in that order.
    keys: [String; 2],
    task: Option<Versioned<TaskRecord>>,
    index: Versioned<UserIndex>,
    /// The sealed segment holding the task's summary, when the head does not.
    segment: Option<HomeSegment>,
    /// Whether the extra key of [`TaskRepository::read_change_and`] exists.
    wrote_extra: bool,
    user_id: Uuid,
    bucket: u32,
}

/// A sealed segment as read for a change.
#[derive(Debug)]
struct HomeSegment {
    id: Uuid,
    key: String,
    value: Versioned<IndexSegment>,
}

impl ChangeState {
    /// The task's current record (`None`: no such task, not even a tombstone).
    pub fn record(&self) -> Option<&TaskRecord> {
        self.task.as_ref().map(|task| &task.value)
    }

    /// Whether the index bucket existed when read.
    pub fn index_exists(&self) -> bool {
        self.index.etag.is_some()
    }

    /// The head of the task's index bucket, as read.
    pub fn index(&self) -> &UserIndex {
        &self.index.value
    }

    /// The task's record key.
    pub(super) fn task_key(&self) -> &str {
        &self.keys[0]
    }

    /// The task's index bucket.
    pub fn bucket(&self) -> u32 {
        self.bucket
    }

    /// Whether the extra key read with [`TaskRepository::read_change_and`] exists.
    pub fn wrote_extra(&self) -> bool {
        self.wrote_extra
    }

    /// Whether any of the keys was written between the read of `earlier` and this one.
    pub fn moved_since(&self, earlier: &ChangeState) -> bool {
        self.task_etag() != earlier.task_etag()
            || self.index.etag != earlier.index.etag
            || self.segment_etag() != earlier.segment_etag()
    }

    fn segment_etag(&self) -> Option<&str> {
        self.segment
            .as_ref()
            .and_then(|segment| segment.value.etag.as_deref())
    }

    pub(super) fn task_etag(&self) -> Option<&str> {
        self.task.as_ref().and_then(|task| task.etag.as_deref())
    }
}

fn decode<T: DeserializeOwned>(value: &RawValue, key: &str) -> Result<T, StoreError> {
    serde_json::from_str(value.get()).map_err(|source| StoreError::Unreadable {
        key: key.to_owned(),
        source,
    })
}

fn decode_or_default<T: DeserializeOwned + Default>(
    (value, etag): (Option<Box<RawValue>>, Option<String>),
    key: &str,
) -> Result<Versioned<T>, StoreError> {
    let value = match value {
        None => T::default(),
        Some(value) => decode(&value, key)?,
    };
    Ok(Versioned { value, etag })
}

impl TaskRepository {
    /// Reads what a change of `task_id` (owned by `user_id`) is checked against.
    pub async fn read_change(
        &self,
        task_id: Uuid,
        user_id: Uuid,
    ) -> Result<ChangeState, StoreError> {
        self.read_change_and(task_id, user_id, None).await
    }

    /// Like [`Self::read_change`], in the same bulk read also whether the key `written` exists
    /// ([`ChangeState::wrote_extra`]): after a failed transaction, whether its outbox entry
    /// was applied.
    pub async fn read_change_and(
        &self,
        task_id: Uuid,
        user_id: Uuid,
        written: Option<&str>,
    ) -> Result<ChangeState, StoreError> {
        let keys = [task_key(task_id), index_key(user_id, task_id)];
        let mut wanted = keys.to_vec();
        wanted.extend(written.map(str::to_owned));
        let mut items = self
            .dapr
            // Raw JSON text, decoded straight into each key's type below.
            .get_bulk_state::<Box<RawValue>>(&self.store, &wanted)
            .await?
            .into_iter();
        let mut next = |key: &str| -> Result<(Option<Box<RawValue>>, Option<String>), StoreError> {
            let item = items.next().ok_or(StoreError::ShortBulkRead)?;
            if let Some(message) = item.error {
                return Err(StoreError::Key {
                    key: key.to_owned(),
                    message,
                });
            }
            Ok((item.value, item.etag))
        };
        let (task, task_etag) = next(&keys[0])?;
        let index = next(&keys[1])?;
        let wrote_extra = match written {
            Some(key) => next(key)?.0.is_some(),
            None => false,
        };
        let task = match task {
            None => None,
            Some(value) => Some(Versioned {
                value: decode::<TaskRecord>(&value, &keys[0])?,
                etag: task_etag,
            }),
        };
        let index: Versioned<UserIndex> = decode_or_default(index, &keys[1])?;
        let bucket = bucket_of(task_id, INDEX_BUCKETS);
        let segment = match index.value.home_of(task_id) {
            None => None,
            Some(home) => {
                let id = index.value.sealed[home].segment;
                let key = index_segment_key(user_id, bucket, id);
                Some(HomeSegment {
                    id,
                    value: self.read_segment(&key).await?,
                    key,
                })
            }
        };
        Ok(ChangeState {
            keys,
            task,
            index,
            segment,
            wrote_extra,
            user_id,
            bucket,
        })
    }

    /// A sealed segment with its etag; a segment its head lists but the store lacks (its write
    /// was the part of a transaction that did not apply) reads as empty.
    pub(super) async fn read_segment(
        &self,
        key: &str,
    ) -> Result<Versioned<IndexSegment>, StoreError> {
        Ok(
            match self
                .dapr
                .get_state::<IndexSegment>(&self.store, key)
                .await?
            {
                Some(entry) => Versioned {
                    value: entry.value,
                    etag: entry.etag,
                },
                None => Versioned::default(),
            },
        )
    }

    /// Writes `record` over `state` in one transaction (which is not atomic, see the module
    /// doc): the record (with the tombstone TTL when it is deleted), the index when the record
    /// changes its summary (the head, or the sealed segment holding the summary and the head when
    /// the segment's counts change; a head grown past `head_size` seals its oldest summaries into
    /// a new segment), each etag-checked, and the event's outbox entry under its own fresh key
    /// `entry_key` (`first-write`: no other writer ever names it).
    pub async fn write_change(
        &self,
        state: &ChangeState,
        record: &TaskRecord,
        entry_key: &str,
        entry: &OutboxEntry,
    ) -> Result<(), DaprError> {
        let mut ops = Vec::with_capacity(3);
        let mut task = SaveItem::new(state.keys[0].clone(), record)?;
        task = match &state.task {
            Some(current) => task.etag(current.etag.clone()),
            None => task.first_write(),
        };
        if record.deleted {
            task = task.ttl(self.tombstone_ttl);
        }
        ops.push(TransactionOp::Upsert(task));
        let mut head = state.index.value.clone();
        let mut head_changed = false;
        match &state.segment {
            Some(home) => {
                let mut segment = home.value.value.clone();
                let changed = reconcile(&mut segment.tasks, record);
                if changed {
                    ops.push(TransactionOp::Upsert(
                        home.value.write(home.key.clone(), &segment)?,
                    ));
                }
                // Recounted even when the segment is unchanged: a failed transaction may have
                // written the segment and not the head.
                if let Some(entry) = head.sealed_mut(home.id) {
                    head_changed = entry.recount(&segment);
                }
            }
            None => {
                head_changed = head.reconcile(record);
                if head_changed
                    && let Some((id, segment)) =
                        head.seal(self.layout.head_size, self.layout.segment_size)
                {
                    // A fresh random key: no other writer can have it, so no etag.
                    let key = index_segment_key(state.user_id, state.bucket, id);
                    ops.push(TransactionOp::Upsert(SaveItem::new(key, &segment)?));
                }
            }
        }
        if head_changed {
            ops.push(TransactionOp::Upsert(
                state.index.write(state.keys[1].clone(), &head)?,
            ));
        }
        let stored = OutboxShard::one(entry);
        ops.push(TransactionOp::Upsert(
            SaveItem::new(entry_key.to_owned(), &stored)?.first_write(),
        ));
        self.dapr.transact_state(&self.store, &ops).await
    }

    /// Creates the (empty) index bucket `task_id` falls in, unless it exists, with a save of its
    /// own. A transaction cannot do this safely: on Redis a `first-write` upsert inside a
    /// transaction does not mark the key, so it overwrites a bucket another replica created since
    /// the read (components-contrib `state/redis/redis.go`, `StateStore.Multi`). A plain
    /// `first-write` save marks it, and a second one fails, so the change that follows always
    /// writes the bucket against an etag.
    pub async fn create_index_bucket(
        &self,
        user_id: Uuid,
        task_id: Uuid,
    ) -> Result<(), StoreError> {
        let item = SaveItem::new(index_key(user_id, task_id), &UserIndex::default())?.first_write();
        match self.dapr.save_state(&self.store, &[item]).await {
            Ok(()) => Ok(()),
            Err(error) if error.is_write_conflict() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}
