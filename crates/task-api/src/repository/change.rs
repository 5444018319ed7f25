//! The state one change of a task is checked against, and the transaction that writes it.

use dapr_http::{DaprError, SaveItem, TransactionOp};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::index::UserIndex;
use super::keys::{index_key, task_key};
use super::outbox_shard::OutboxShard;
use super::{StoreError, TaskRepository, Versioned};
use crate::model::TaskRecord;

/// What a change of one task reads, in one bulk request: the task's record, its bucket of the
/// owner's index and one outbox shard, each with the etag its write is checked against.
#[derive(Debug)]
pub struct ChangeState {
    /// `task:{id}`, the index bucket and the outbox shard, in that order.
    keys: [String; 3],
    task: Option<Versioned<TaskRecord>>,
    index: Versioned<UserIndex>,
    outbox: Versioned<OutboxShard>,
    /// The length of the shard's JSON text as read.
    outbox_bytes: usize,
}

impl ChangeState {
    /// The task's current record (`None`: no such task, not even a tombstone).
    pub fn record(&self) -> Option<&TaskRecord> {
        self.task.as_ref().map(|task| &task.value)
    }

    /// The outbox shard as read.
    pub fn outbox(&self) -> &OutboxShard {
        &self.outbox.value
    }

    /// The size of the outbox shard's stored JSON, which every write of the shard sends again.
    pub fn outbox_bytes(&self) -> usize {
        self.outbox_bytes
    }

    /// Whether the index bucket existed when read.
    pub fn index_exists(&self) -> bool {
        self.index.etag.is_some()
    }

    /// Whether any of the keys was written between the read of `earlier` and this one.
    pub fn moved_since(&self, earlier: &ChangeState) -> bool {
        self.task_etag() != earlier.task_etag()
            || self.index.etag != earlier.index.etag
            || self.outbox.etag != earlier.outbox.etag
    }

    fn task_etag(&self) -> Option<&str> {
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
    /// Reads what a change of `task_id` (owned by `user_id`) is checked against, with the outbox
    /// shard `shard_key`.
    pub async fn read_change(
        &self,
        task_id: Uuid,
        user_id: Uuid,
        shard_key: &str,
    ) -> Result<ChangeState, StoreError> {
        let keys = [
            task_key(task_id),
            index_key(user_id, task_id),
            shard_key.to_owned(),
        ];
        let mut items = self
            .dapr
            // Raw JSON text, decoded straight into each key's type below.
            .get_bulk_state::<Box<RawValue>>(&self.store, &keys)
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
        let outbox = next(&keys[2])?;
        let task = match task {
            None => None,
            Some(value) => Some(Versioned {
                value: decode::<TaskRecord>(&value, &keys[0])?,
                etag: task_etag,
            }),
        };
        let index = decode_or_default(index, &keys[1])?;
        let outbox_bytes = outbox.0.as_ref().map_or(0, |raw| raw.get().len());
        let outbox = decode_or_default(outbox, &keys[2])?;
        Ok(ChangeState {
            keys,
            task,
            index,
            outbox,
            outbox_bytes,
        })
    }

    /// Writes `record` and `outbox` over `state` in one transaction (which is not atomic, see
    /// the module doc): the record (with the tombstone TTL when it is deleted), the index bucket
    /// when the record changes its summary, and the outbox shard, each etag-checked.
    pub async fn write_change(
        &self,
        state: &ChangeState,
        record: &TaskRecord,
        outbox: &OutboxShard,
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
        let mut index = state.index.value.clone();
        if index.reconcile(record) {
            ops.push(TransactionOp::Upsert(
                state.index.write(state.keys[1].clone(), &index)?,
            ));
        }
        ops.push(TransactionOp::Upsert(
            state.outbox.write(state.keys[2].clone(), outbox)?,
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

    /// Makes the owner's index agree with a committed record: after a failed transaction whose
    /// task write applied, the index write may be the operation that did not.
    pub async fn repair_index(&self, record: &TaskRecord) -> Result<(), StoreError> {
        let key = index_key(record.task.user_id, record.task.task_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut index = match self.dapr.get_state::<UserIndex>(&self.store, &key).await? {
                Some(entry) => Versioned {
                    value: entry.value,
                    etag: entry.etag,
                },
                None => Versioned::default(),
            };
            if !index.value.reconcile(record) {
                return Ok(());
            }
            let item = index.write(key.clone(), &index.value)?;
            match self.dapr.save_state(&self.store, &[item]).await {
                Ok(()) => return Ok(()),
                Err(error)
                    if error.is_etag_conflict() || matches!(error, DaprError::Server { .. }) =>
                {
                    self.back_off(attempt).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}
