//! [`Outbox::commit`] and [`Outbox::publish`]: one change, its event recorded with it, then
//! published.

use dapr_http::DaprError;
use uuid::Uuid;

use super::{Outbox, OutboxEntry};
use crate::error::ApiError;
use crate::model::TaskRecord;

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
    record: TaskRecord,
    entry: OutboxEntry,
}

impl Committed {
    fn new(record: TaskRecord, entry: OutboxEntry) -> Self {
        metrics::counter!("task_api_changes_committed_total", "topic" => entry.topic.clone())
            .increment(1);
        Self { record, entry }
    }
}

impl Outbox {
    /// Applies one change of task `task_id` (owned by `user_id`): reads the task, its index
    /// bucket and its outbox shard, lets `plan` decide, and writes the new record with its event
    /// appended to the shard in one etag-checked transaction, pruning the shard's published
    /// entries in the same write. Retried on a fresh read (up to `CONFLICT_RETRIES` attempts,
    /// with jittered backoff) when another writer got there first; see the module doc for what
    /// a failed transaction may have left and how it is judged.
    pub async fn commit(
        &self,
        task_id: Uuid,
        user_id: Uuid,
        mut plan: impl FnMut(Option<&TaskRecord>) -> Result<Plan, ApiError>,
    ) -> Result<Commit, ApiError> {
        let shard = self.shard_of(task_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let turn = self.lock_shard(shard).await;
            let state = self.repository.read_change(task_id, user_id, shard).await?;
            let (mut record, entry) = match plan(state.record())? {
                Plan::Unchanged(record) => return Ok(Commit::Unchanged(record)),
                Plan::Change(record, entry) => (record, entry),
            };
            record.push_event(entry.event_id);
            let swept = self.published_in(shard);
            let mut pending = state.outbox().clone();
            pending.entries.retain(|e| !swept.contains(&e.event_id));
            pending.entries.push(entry.clone());
            let error = match self
                .repository
                .write_change(&state, &record, &pending)
                .await
            {
                Ok(()) => {
                    self.forget(shard, &swept);
                    return Ok(Commit::Committed(Committed::new(record, entry)));
                }
                Err(error) => error,
            };
            let after = self.repository.read_change(task_id, user_id, shard).await?;
            // The repair below writes the shard itself, under its own turn.
            drop(turn);
            if after
                .record()
                .is_some_and(|r| r.has_committed(entry.event_ref()))
            {
                tracing::warn!(%error, event_id = %entry.event_id,
                    "transaction reported failure but the task change committed; recording the event");
                self.append(&entry).await?;
                self.repository.repair_index(&record).await?;
                return Ok(Commit::Committed(Committed::new(record, entry)));
            }
            if !after.moved_since(&state) {
                // Nothing changed under us, so this was not a conflict: a store failure.
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

    /// Publishes the event of a committed change and gives back its record. A failed publish is
    /// logged and left to the relay: the change is committed either way.
    pub async fn publish(&self, committed: Committed) -> TaskRecord {
        let Committed { record, entry } = committed;
        match self.send(&entry).await {
            Ok(()) => {
                metrics::counter!("task_api_events_published_total", "path" => "direct", "topic" => entry.topic.clone()).increment(1);
                self.published_map()
                    .entry(self.shard_of(entry.task_id))
                    .or_default()
                    .insert(entry.event_id);
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
