//! The state one change of a task is checked against (its record alone: the index is not on the
//! request path, see [`super::projection`]), the transaction that writes the change, and the read
//! after a failed one that shows what it did.

use dapr_http::{DaprError, SaveItem, TransactionOp};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::keys::{slot_key, task_key};
use super::outbox_shard::{OutboxEntry, OutboxShard};
use super::{CREATE_ONLY_ETAG, StoreError, TaskRepository, Versioned};
use crate::model::TaskRecord;

/// What a change of one task is checked against: the task's record with its etag, or nothing
/// for a create (a fresh UUID v7 that no other writer names, so nothing to read).
#[derive(Debug)]
pub struct ChangeState {
    key: String,
    task: Option<Versioned<TaskRecord>>,
}

impl ChangeState {
    /// The state of a task that does not exist yet: its transaction creates the record with a
    /// create-only etag instead of reading it first.
    pub fn fresh(task_id: Uuid) -> Self {
        Self {
            key: task_key(task_id),
            task: None,
        }
    }

    /// The task's current record (`None`: no such task, not even a tombstone).
    pub fn record(&self) -> Option<&TaskRecord> {
        self.task.as_ref().map(|task| &task.value)
    }

    pub(super) fn task_etag(&self) -> Option<&str> {
        self.task.as_ref().and_then(|task| task.etag.as_deref())
    }
}

/// What a read after a failed transaction found.
#[derive(Debug)]
pub struct ReadBack {
    key: String,
    task: Option<Versioned<TaskRecord>>,
    /// Whether the change's outbox entry key exists.
    pub wrote_entry: bool,
    /// The task holding the slot the change tried to take (`None`: the slot is free, or the
    /// change took none).
    pub slot_holder: Option<Uuid>,
}

impl ReadBack {
    /// The task's record as read back.
    pub fn record(&self) -> Option<&TaskRecord> {
        self.task.as_ref().map(|task| &task.value)
    }

    /// Whether the record moved since `earlier` was read.
    pub fn moved_since(&self, earlier: &ChangeState) -> bool {
        self.task.as_ref().and_then(|t| t.etag.as_deref()) != earlier.task_etag()
    }

    pub(super) fn task_key(&self) -> &str {
        &self.key
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

impl TaskRepository {
    /// Reads what a change of `task_id` is checked against: one read of its record.
    pub async fn read_change(&self, task_id: Uuid) -> Result<ChangeState, StoreError> {
        let key = task_key(task_id);
        let task = self
            .dapr
            .get_state::<TaskRecord>(&self.store, &key)
            .await?
            .map(|entry| Versioned {
                value: entry.value,
                etag: entry.etag,
            });
        Ok(ChangeState { key, task })
    }

    /// After a failed transaction: the task's record, whether the entry key `entry_key` exists
    /// and who holds `slot` (the owner and number of the slot the change tried to take), in one
    /// bulk read.
    pub async fn read_back(
        &self,
        task_id: Uuid,
        entry_key: &str,
        slot: Option<(Uuid, u32)>,
    ) -> Result<ReadBack, StoreError> {
        let key = task_key(task_id);
        let mut wanted = vec![key.clone(), entry_key.to_owned()];
        wanted.extend(slot.map(|(user, n)| slot_key(user, n)));
        let mut items = self
            .dapr
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
        let (task, etag) = next(&wanted[0])?;
        let wrote_entry = next(&wanted[1])?.0.is_some();
        let slot_holder = match wanted.get(2) {
            Some(slot) => match next(slot)?.0 {
                Some(value) => Some(decode::<Uuid>(&value, slot)?),
                None => None,
            },
            None => None,
        };
        let task = match task {
            None => None,
            Some(value) => Some(Versioned {
                value: decode::<TaskRecord>(&value, &key)?,
                etag,
            }),
        };
        Ok(ReadBack {
            key,
            task,
            wrote_entry,
            slot_holder,
        })
    }

    /// Writes `record` over `state` in one transaction (which is not atomic, see the module
    /// doc): the record, etag-checked (create-only for a create; with the tombstone TTL when it
    /// is deleted), the event's outbox entry under its own fresh key `entry_key`, and, when the
    /// change opens the task, the slot `record.slot` names, create-only with the task's id as
    /// its value. No index key: the cleaner projects the change into the index afterwards.
    pub async fn write_change(
        &self,
        state: &ChangeState,
        record: &TaskRecord,
        takes_slot: bool,
        entry_key: &str,
        entry: &OutboxEntry,
    ) -> Result<(), DaprError> {
        let mut ops = Vec::with_capacity(3);
        let mut task = SaveItem::new(state.key.clone(), record)?;
        task = match &state.task {
            Some(current) => task.etag(current.etag.clone()),
            // `first-write` is not enforced inside a Redis transaction (components-contrib
            // `state/redis/redis.go`, `StateStore.Multi`); an etag no version equals is.
            None => task.etag(Some(CREATE_ONLY_ETAG)),
        };
        if record.deleted {
            task = task.ttl(self.tombstone_ttl);
        }
        ops.push(TransactionOp::Upsert(task));
        if takes_slot && let Some(n) = record.slot {
            let key = slot_key(record.task.user_id, n);
            let item = SaveItem::new(key, &record.task.task_id)?.etag(Some(CREATE_ONLY_ETAG));
            ops.push(TransactionOp::Upsert(item));
        }
        let stored = OutboxShard::one(entry);
        ops.push(TransactionOp::Upsert(
            SaveItem::new(entry_key.to_owned(), &stored)?.first_write(),
        ));
        self.dapr.transact_state(&self.store, &ops).await
    }
}
