//! [`Outbox::commit`] and [`Outbox::publish`]: one change, its event recorded with it, then
//! published.

use dapr_http::DaprError;
use uuid::Uuid;

use super::book::{EntryId, Stage};
use super::{Outbox, OutboxEntry};
use crate::error::ApiError;
use crate::model::TaskRecord;
use crate::repository::Repair;
use crate::repository::limit::opens;

/// What a change makes of the task's current record.
#[derive(Debug)]
pub enum Plan {
    /// Nothing to write; answer with this record.
    Unchanged(TaskRecord),
    /// Write this record (version bumped) and record this event of it.
    Change(TaskRecord, OutboxEntry),
}

/// What [`Outbox::commit`] did.
#[derive(Debug)]
pub enum Commit {
    /// The planner wanted no write.
    Unchanged(TaskRecord),
    /// The change committed with its event recorded; publish it next.
    Committed(Committed),
}

/// A committed change whose event is recorded but not yet published. Until
/// [`Outbox::publish`] sends it, only the relay will, after `OUTBOX_GRACE_PERIOD`.
#[derive(Debug)]
#[must_use = "publish it with `Outbox::publish`, or the event waits for the relay"]
pub struct Committed {
    id: EntryId,
    record: TaskRecord,
    entry: OutboxEntry,
}

impl Committed {
    fn new(id: EntryId, record: TaskRecord, entry: OutboxEntry) -> Self {
        metrics::counter!("task_api_changes_committed_total", "topic" => entry.topic.clone())
            .increment(1);
        Self { id, record, entry }
    }
}

/// Whether a failed write is known to be over: the store answered, or the request never left
/// this process. Only then does a read after it show all it did. Otherwise (the sidecar
/// unreachable or timed out, a 5xx that is not the store's verdict on the transaction, an
/// unreadable answer) the write may still apply later.
fn store_answered(error: &DaprError) -> bool {
    matches!(
        error,
        DaprError::Transaction { .. }
            | DaprError::EtagMismatch { .. }
            | DaprError::BadRequest { .. }
            | DaprError::StoreNotFound { .. }
            | DaprError::Unauthorized { .. }
            | DaprError::Forbidden { .. }
            | DaprError::Settings(_)
            | DaprError::Client(_)
            | DaprError::Encode { .. }
    )
}

impl Outbox {
    /// Applies one change of task `task_id` (owned by `user_id`): reads the task and its index
    /// bucket, lets `plan` decide, and writes the new record, its index summary and its event's
    /// entry (under a per-event key of its own) in one etag-checked transaction. Retried on a
    /// fresh read (up to `CONFLICT_RETRIES` attempts, with jittered backoff) when another writer
    /// got there first; see the module doc for what a failed transaction may have left and how
    /// it is judged.
    pub async fn commit(
        &self,
        task_id: Uuid,
        user_id: Uuid,
        mut plan: impl FnMut(Option<&TaskRecord>) -> Result<Plan, ApiError>,
    ) -> Result<Commit, ApiError> {
        // Held through every attempt and its backoff; released before the publish.
        let _turn = self.bucket_turn(user_id, task_id).await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let state = self.repository.read_change(task_id, user_id).await?;
            let (mut record, mut entry) = match plan(state.record())? {
                Plan::Unchanged(record) => return Ok(Commit::Unchanged(record)),
                Plan::Change(record, entry) => (record, entry),
            };
            // Checked against the head this attempt read, and the transaction writes that head
            // against its etag, so the open-task count cannot move in between
            // (`crate::repository::limit`).
            self.repository.limit().admit(&state, &record)?;
            if !state.index_exists() {
                // Created on its own first, so the transaction checks it against an etag.
                self.repository
                    .create_index_bucket(user_id, task_id)
                    .await?;
                continue;
            }
            self.check_budget()?;
            // Taken right before the write, so every key is written while the lease holds.
            let instance = self.lease.id().await?;
            let id = (instance, self.allocate(instance).await?);
            record.push_event(entry.event_id);
            let key = self.track(id, &entry);
            let error = match self
                .repository
                .write_change(&state, &record, &key, &entry)
                .await
            {
                Ok(()) => {
                    self.set_stage(id, Stage::Committed);
                    return Ok(Commit::Committed(Committed::new(id, record, entry)));
                }
                Err(error) => error,
            };
            let after = match self
                .repository
                .read_change_and(task_id, user_id, Some(&key))
                .await
            {
                Ok(after) => after,
                Err(read_error) => {
                    // The relay judges the entry from the task record after the grace period.
                    self.set_stage(id, Stage::Unknown);
                    tracing::warn!(%error, %read_error, event_id = %entry.event_id,
                        "transaction failed and its outcome could not be read; the relay will judge it");
                    return Err(read_error.into());
                }
            };
            if after
                .record()
                .is_some_and(|r| r.has_committed(entry.event_ref()))
            {
                // The task write applied and something else did not. When the change opens a
                // task, the failed write may be the head's, whose etag kept the open-task count
                // exact: the cap is checked again as the summary is added, and the change is
                // taken back if the bucket filled up meanwhile (`repository::limit`).
                self.set_stage(id, Stage::Unknown);
                let limit = self.repository.limit();
                if opens(state.record(), &record) {
                    let cap = limit.cap_of(state.bucket());
                    if self.repair_committed(&record, Some(cap)).await == Some(Repair::Full) {
                        if self.repository.undo_change(&after, state.record()).await? {
                            self.set_stage(id, Stage::Abandoned);
                            tracing::warn!(%error, event_id = %entry.event_id,
                                "transaction failed in part and the bucket reached its open-task cap meanwhile; change taken back");
                            return Err(limit.reached(state.bucket()));
                        }
                        tracing::warn!(%error, event_id = %entry.event_id,
                            "a change past the open-task cap could not be taken back; the cap is passed by one");
                    }
                }
                // From here the event is published whatever the store does next: this process
                // holds it as committed, publishes it below, and its relay retries a failed
                // publish. The key is written too, so a replica publishes it if this process
                // dies first; when the store refuses that as well, the event is not lost while
                // this process lives.
                self.set_stage(id, Stage::Committed);
                entry.committed = true;
                tracing::warn!(%error, event_id = %entry.event_id,
                    "transaction reported failure but the task change committed; recording the event");
                if let Err(save_error) = self.repository.save_outbox_entry(&key, &entry).await {
                    tracing::error!(%save_error, event_id = %entry.event_id,
                        "could not record the event of a committed change; it is published from memory");
                }
                self.repair_committed(&record, None).await;
                return Ok(Commit::Committed(Committed::new(id, record, entry)));
            }
            if !store_answered(&error) {
                // The store never gave its word on the transaction, which may still apply after
                // the read above: that read proves nothing. Forgetting the entry would lose the
                // event of a change landing later (no relay of this process would know it, and
                // `low` would pass its number); the relay judges it from the task record after
                // the grace period. Not retried: a second attempt could commit it twice.
                self.set_stage(id, Stage::Unknown);
                tracing::warn!(%error, event_id = %entry.event_id,
                    "transaction failed without an answer from the store; the relay will judge it");
                return Err(error.into());
            }
            if after.wrote_extra() {
                // Written without its change: a phantom, deleted (and counted) by the next sweep.
                self.set_stage(id, Stage::Abandoned);
            } else {
                self.forget(&[id]);
            }
            if !after.moved_since(&state) && !after.wrote_extra() {
                // Nothing changed under us and nothing of the transaction applied, so this was
                // not a conflict: a store failure.
                if !error.is_etag_conflict() {
                    return Err(error.into());
                }
                return Err(ApiError::Dapr(DaprError::Server {
                    status: 503,
                    code: error.error_code().unwrap_or_default().to_owned(),
                    message: error.to_string(),
                }));
            }
            metrics::counter!("task_api_conflict_retries_total").increment(1);
            self.repository.back_off(attempt).await?;
        }
    }

    /// Puts the owner's index right after a change that committed; `None`: it could not. The
    /// failure is logged and counted, never returned: the change and its event stand, and a
    /// client told otherwise would retry and make a second change (a second event, a second
    /// email). The next change of the task writes its summary again.
    async fn repair_committed(&self, record: &TaskRecord, cap: Option<u64>) -> Option<Repair> {
        match self.repository.repair_index(record, cap).await {
            Ok(repair) => Some(repair),
            Err(error) => {
                metrics::counter!("task_api_index_repair_failures_total").increment(1);
                tracing::error!(%error, task_id = %record.task.task_id,
                    "could not put the index right after a committed change; it disagrees with the task until the task's next change");
                None
            }
        }
    }

    /// Publishes the event of a committed change and gives back its record. A failed publish is
    /// logged and left to the relay: the change is committed either way.
    pub async fn publish(&self, committed: Committed) -> TaskRecord {
        let Committed { id, record, entry } = committed;
        match self.send(&entry).await {
            Ok(()) => {
                metrics::counter!("task_api_events_published_total", "path" => "direct", "topic" => entry.topic.clone()).increment(1);
                self.set_stage(id, Stage::Published);
            }
            Err(error) => {
                metrics::counter!("task_api_publish_failures_total").increment(1);
                tracing::warn!(%error, event_id = %entry.event_id, topic = %entry.topic,
                    "publish after commit failed; the outbox relay will retry");
            }
        }
        record
    }
}
