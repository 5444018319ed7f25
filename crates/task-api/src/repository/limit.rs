//! The per-user limit on open tasks (`MAX_OPEN_TASKS_PER_USER`): a task is open until it is
//! completed or deleted, so completing or deleting one frees a slot, and reopening a completed
//! one (a `PATCH` of its status) takes one again.
//!
//! # How the count stays exact with replicas racing
//!
//! A global counter key would be one more write on every create, complete and delete, and one
//! key all of a user's changes race on: the serialisation point the index buckets exist to
//! avoid. Instead the limit is split over the user's `INDEX_BUCKETS` (16) index buckets: bucket
//! `b` may hold `max / 16` open tasks, plus one for the first `max % 16` buckets, so the caps
//! add up to exactly `max`. A bucket's open count comes from its head alone
//! ([`UserIndex::open_tasks`](crate::repository::UserIndex::open_tasks)), which every change
//! of the bucket already reads, and every change that opens a task (a create, a reopen) writes
//! that head against the etag it read. Two changes that both open a task in one bucket cannot
//! both commit from the same count: the second one's transaction fails on the head and its
//! retry reads the new count. So the bound holds exactly per bucket, and so exactly for the
//! user: **at most `max` open tasks, whatever the number of replicas**.
//!
//! The transaction is not atomic (see [the repository](super)): when its head write fails its
//! etag check, the task write may still apply, and the commit would then add the summary to the
//! head afterwards ([`TaskRepository::repair_index`](super::TaskRepository::repair_index)). For a
//! change that opens a task, that repair checks the cap again against the head it writes (etag
//! checked too), and when the bucket filled up in the meantime the change is taken back
//! ([`TaskRepository::undo_change`](super::TaskRepository::undo_change)): the record is restored
//! or the new task deleted, so its event's outbox entry is discarded, and the
//! request gets the limit's answer. The bound can only be passed, by one task per occurrence,
//! when that undo itself fails (the task changed again in the few milliseconds between) or the
//! process dies between the failed transaction and the undo; or when a reopen of an older task,
//! whose summary lives in a sealed segment, has its segment write apply and its head write fail
//! (the repair then counts what the segment already says).
//!
//! A create picks its bucket through its task id. When that bucket is full it reads the 16
//! heads (one bulk read) and takes a new id in a bucket with room, so a create is refused only
//! when every bucket is at its cap: when the user has exactly `max` open tasks. A reopen cannot
//! move its task, so it is refused when the task's own bucket is full, which can happen a few
//! slots before `max` (the answer is the same problem, naming the limit).

use uuid::Uuid;

use super::{ChangeState, INDEX_BUCKETS, bucket_of};
use crate::error::ApiError;

/// `MAX_OPEN_TASKS_PER_USER`, split over the index buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTaskLimit {
    max: u32,
}

impl OpenTaskLimit {
    pub fn new(max: u32) -> Self {
        Self { max }
    }

    /// The setting.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// How many open tasks bucket `bucket` may hold.
    pub fn cap_of(&self, bucket: u32) -> u64 {
        let share = u64::from(self.max / INDEX_BUCKETS);
        share + u64::from(bucket < self.max % INDEX_BUCKETS)
    }

    /// The refusal a change that would open one task too many gets.
    pub fn reached(&self, bucket: u32) -> ApiError {
        ApiError::OpenTaskLimit {
            limit: self.max,
            bucket,
        }
    }

    /// Refuses `next` (the record a change would write over `state`) when it opens a task in a
    /// bucket already at its cap. Changes that leave a task open, close it or delete it always
    /// pass: a user over the limit (after the setting was lowered) can still work on open tasks.
    pub fn admit(
        &self,
        state: &ChangeState,
        next: &crate::model::TaskRecord,
    ) -> Result<(), ApiError> {
        if !opens(state.record(), next) {
            return Ok(());
        }
        if state.index().open_tasks() >= self.cap_of(state.bucket()) {
            metrics::counter!("task_api_open_task_limit_total").increment(1);
            return Err(self.reached(state.bucket()));
        }
        Ok(())
    }

    /// A fresh task id (UUID v7: creation order) whose bucket is `bucket`: ids are drawn until
    /// one hashes there, 16 draws on average.
    pub fn id_in_bucket(bucket: u32) -> Option<Uuid> {
        (0..100_000)
            .map(|_| Uuid::now_v7())
            .find(|id| bucket_of(*id, INDEX_BUCKETS) == bucket)
    }
}

/// Whether writing `next` over `previous` opens a task: a create, or a reopen.
pub fn opens(previous: Option<&crate::model::TaskRecord>, next: &crate::model::TaskRecord) -> bool {
    is_open(next) && !previous.is_some_and(is_open)
}

fn is_open(record: &crate::model::TaskRecord) -> bool {
    !record.deleted && record.task.status != events::TaskStatus::Completed
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_caps_add_up_to_the_limit() {
        for max in [1, 15, 16, 17, 100, 10_000, 10_007] {
            let limit = OpenTaskLimit::new(max);
            let total: u64 = (0..INDEX_BUCKETS).map(|b| limit.cap_of(b)).sum();
            assert_eq!(total, u64::from(max), "{max}");
        }
        assert_eq!(OpenTaskLimit::new(10_000).cap_of(3), 625);
    }

    #[test]
    fn ids_can_be_drawn_in_any_bucket() {
        for bucket in 0..INDEX_BUCKETS {
            let id = OpenTaskLimit::id_in_bucket(bucket).unwrap();
            assert_eq!(bucket_of(id, INDEX_BUCKETS), bucket);
            assert_eq!(id.get_version_num(), 7);
        }
    }
}
