//! Taking back a change whose transaction failed in part and must not stand: it wrote the task
//! but not the open-task slot it needed (see [`super::limit`]).

use dapr_http::SaveItem;

use super::change::ReadBack;
use super::{StoreError, TaskRepository};
use crate::model::TaskRecord;

impl TaskRepository {
    /// Takes back a change whose transaction wrote the task (`after` is the state read since):
    /// restores `previous` (or deletes the task a create made), checked against the etag
    /// `after` read, so the record no longer names the change's event and the relay would
    /// discard the event's outbox entry. Returns whether it did; `false` when the task moved
    /// again since.
    pub async fn undo_change(
        &self,
        after: &ReadBack,
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
