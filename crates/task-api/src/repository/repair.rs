//! Putting the index right after a transaction that failed in part, and taking back a change
//! that must not stand (see [`super::limit`]).

use dapr_http::{DaprError, SaveItem, TransactionOp};
use uuid::Uuid;

use super::change::ChangeState;
use super::index::{TaskSummary, UserIndex, reconcile};
use super::keys::{INDEX_BUCKETS, bucket_of, index_key, index_segment_key};
use super::{StoreError, TaskRepository, Versioned};
use crate::model::TaskRecord;

impl TaskRepository {
    /// Makes the owner's index agree with a committed record: after a failed transaction whose
    /// task write applied, the index write may be the operation that did not. Fixes the summary
    /// where it lives (the head, or its sealed segment and that segment's counts in the head).
    /// With `cap`, a record that opens a task the index does not count yet is added only while
    /// the bucket holds fewer than `cap` open tasks; otherwise nothing is written and the answer
    /// is [`Repair::Full`].
    pub async fn repair_index(
        &self,
        record: &TaskRecord,
        cap: Option<u64>,
    ) -> Result<Repair, StoreError> {
        let user_id = record.task.user_id;
        let task_id = record.task.task_id;
        let bucket = bucket_of(task_id, INDEX_BUCKETS);
        let key = index_key(user_id, task_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let index = match self.dapr.get_state::<UserIndex>(&self.store, &key).await? {
                Some(entry) => Versioned {
                    value: entry.value,
                    etag: entry.etag,
                },
                None => Versioned::default(),
            };
            let mut head = index.value.clone();
            let mut ops = Vec::with_capacity(2);
            let full = cap.is_some_and(|cap| index.value.open_tasks() >= cap);
            let head_changed = match index.value.home_of(task_id) {
                None => {
                    if full && !counted(&index.value.tasks, task_id) {
                        return Ok(Repair::Full);
                    }
                    head.reconcile(record)
                }
                Some(home) => {
                    let id = index.value.sealed[home].segment;
                    let segment_key = index_segment_key(user_id, bucket, id);
                    let stored = self.read_segment(&segment_key).await?;
                    if full && !counted(&stored.value.tasks, task_id) {
                        return Ok(Repair::Full);
                    }
                    let mut segment = stored.value.clone();
                    if reconcile(&mut segment.tasks, record) {
                        ops.push(stored.write(segment_key, &segment)?);
                    }
                    head.sealed_mut(id)
                        .is_some_and(|entry| entry.recount(&segment))
                }
            };
            if head_changed {
                ops.push(index.write(key.clone(), &head)?);
            }
            let written = match ops.len() {
                0 => return Ok(Repair::Done),
                // A plain save, not a transaction: only a save enforces `first-write` on Redis
                // (see `create_index_bucket`).
                1 => self.dapr.save_state(&self.store, &ops).await,
                _ => {
                    let ops: Vec<TransactionOp> =
                        ops.into_iter().map(TransactionOp::Upsert).collect();
                    self.dapr.transact_state(&self.store, &ops).await
                }
            };
            match written {
                Ok(()) => return Ok(Repair::Done),
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

/// What [`TaskRepository::repair_index`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The index agrees with the record.
    Done,
    /// The record opens a task and its bucket is at the cap: nothing written.
    Full,
}

/// Whether `tasks` counts `id` as an open task already.
fn counted(tasks: &[TaskSummary], id: Uuid) -> bool {
    tasks.iter().any(|s| s.id == id && s.is_open())
}

impl TaskRepository {
    /// Takes back a change whose transaction failed in part but wrote the task (`after` is the
    /// state read since): restores `previous` (or deletes the task a create made), checked
    /// against the etag `after` read, so the record no longer names the change's event and the
    /// relay discards the event's outbox entry. Returns whether it did; `false` when the task
    /// moved again since.
    pub async fn undo_change(
        &self,
        after: &ChangeState,
        previous: Option<&TaskRecord>,
    ) -> Result<bool, StoreError> {
        let etag = after.task_etag().map(str::to_owned);
        let undone = match previous {
            None => {
                self.dapr
                    .delete_state(&self.store, after.task_key(), etag.as_deref())
                    .await
            }
            Some(previous) => {
                let item = SaveItem::new(after.task_key().to_owned(), previous)?.etag(etag);
                self.dapr.save_state(&self.store, &[item]).await
            }
        };
        match undone {
            Ok(()) => Ok(true),
            Err(error) if error.is_write_conflict() => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}
