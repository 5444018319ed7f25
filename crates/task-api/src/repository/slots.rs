//! Reads and releases of the open-task slots ([`super::limit`] says what they are for).

use std::collections::HashMap;

use dapr_http::{DaprError, SaveItem, TransactionOp};
use uuid::Uuid;

use super::keys::{slot_key, task_key};
use super::{CREATE_ONLY_ETAG, StoreError, TaskRepository};
use crate::model::TaskRecord;

/// How many keys one bulk read of slots asks for.
const SLOT_READ_BATCH: usize = 1_000;

/// A slot a settled change took or gave up: released unless its task holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotUse {
    pub user_id: Uuid,
    pub task_id: Uuid,
    pub slot: u32,
}

impl TaskRepository {
    /// The free slots of `user_id` (`0..max`), read in bulk.
    pub async fn free_slots(&self, user_id: Uuid) -> Result<Vec<u32>, StoreError> {
        let all: Vec<u32> = (0..self.limit.max()).collect();
        let mut free = Vec::new();
        for batch in all.chunks(SLOT_READ_BATCH) {
            let keys: Vec<String> = batch.iter().map(|n| slot_key(user_id, *n)).collect();
            let items = self
                .dapr
                .get_bulk_state::<serde_json::Value>(&self.store, &keys)
                .await?;
            if items.len() != keys.len() {
                return Err(StoreError::ShortBulkRead);
            }
            for (n, item) in batch.iter().zip(items) {
                if let Some(message) = item.error {
                    return Err(StoreError::Key {
                        key: item.key,
                        message,
                    });
                }
                if item.value.is_none() {
                    free.push(*n);
                }
            }
        }
        Ok(free)
    }

    /// Takes slot `n` of `user_id` for `task_id` with a save of its own, create-only: a reopen
    /// takes its slot this way before its transaction, so a collision never writes the task
    /// (see [`super::limit`]). Returns whether the slot was taken; `false` when the key exists,
    /// whoever it names: a key naming `task_id` itself is a slot its close or an earlier
    /// attempt left for release, which may delete it at any time.
    pub async fn take_slot(&self, user_id: Uuid, n: u32, task_id: Uuid) -> Result<bool, DaprError> {
        let item = SaveItem::new(slot_key(user_id, n), &task_id)?.etag(Some(CREATE_ONLY_ETAG));
        match self.dapr.save_state(&self.store, &[item]).await {
            Ok(()) => Ok(true),
            Err(error) if error.is_write_conflict() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Releases each slot of `uses` whose key names its task while the task's record (read
    /// after the slot) does not hold it: the task was closed, or the change that wrote the slot
    /// did not commit. Each delete is checked against the etag the slot was read with, so a
    /// slot taken again since is left alone. Safe to repeat; an error means "try again".
    pub async fn release_slots(&self, uses: &[SlotUse]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = uses.iter().map(|u| slot_key(u.user_id, u.slot)).collect();
        let slots = self.dapr.get_bulk_state::<Uuid>(&self.store, &keys).await?;
        if slots.len() != keys.len() {
            return Err(StoreError::ShortBulkRead);
        }
        let mut held = Vec::new();
        for (slot_use, item) in uses.iter().zip(slots) {
            if let Some(message) = item.error {
                return Err(StoreError::Key {
                    key: item.key,
                    message,
                });
            }
            if item.value == Some(slot_use.task_id) {
                held.push((*slot_use, item.key, item.etag));
            }
        }
        if held.is_empty() {
            return Ok(());
        }
        // Read after the slots: a change that takes a slot writes it with its record in one
        // transaction, so a record read now shows every slot the task took before the read above.
        let task_keys: Vec<String> = held.iter().map(|(u, ..)| task_key(u.task_id)).collect();
        let records = self
            .dapr
            .get_bulk_state::<TaskRecord>(&self.store, &task_keys)
            .await?;
        let mut current: HashMap<Uuid, TaskRecord> = HashMap::new();
        for (key, item) in task_keys.iter().zip(records) {
            if let Some(message) = item.error {
                return Err(StoreError::Key {
                    key: key.clone(),
                    message,
                });
            }
            if let Some(record) = item.value {
                current.insert(record.task.task_id, record);
            }
        }
        let ops: Vec<TransactionOp> = held
            .into_iter()
            .filter(|(u, ..)| {
                !current
                    .get(&u.task_id)
                    .is_some_and(|r| !r.deleted && r.slot == Some(u.slot))
            })
            .map(|(_, key, etag)| TransactionOp::Delete { key, etag })
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        // A failure (a slot taken again since its read refuses its delete, as it must) is
        // retried by the caller: the next read no longer lists that slot as the task's.
        self.dapr.transact_state(&self.store, &ops).await?;
        Ok(())
    }
}
