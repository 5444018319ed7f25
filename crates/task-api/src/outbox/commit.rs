//! [`Outbox::commit`] and [`Outbox::publish`]: one change, its event recorded with it, then
//! published.

use dapr_http::DaprError;
use uuid::Uuid;

use super::{Outbox, OutboxEntry, SHARD_BUDGET_BYTES, ShardId};
use crate::error::ApiError;
use crate::model::TaskRecord;
use crate::repository::limit::opens;
use crate::repository::{OutboxShard, Repair};

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
    shard: ShardId,
    record: TaskRecord,
    entry: OutboxEntry,
}

impl Committed {
    fn new(shard: ShardId, record: TaskRecord, entry: OutboxEntry) -> Self {
        metrics::counter!("task_api_changes_committed_total", "topic" => entry.topic.clone())
            .increment(1);
        Self {
            shard,
            record,
            entry,
        }
    }
}

impl Outbox {
    /// Applies one change of task `task_id` (owned by `user_id`): reads the task, its index
    /// bucket and this process's outbox shard for it, lets `plan` decide, and writes the new
    /// record with its event appended to the shard in one etag-checked transaction, applying the
    /// shard's pending marks (published entries removed, committed ones marked) in the same
    /// write. Retried on a fresh read (up to `CONFLICT_RETRIES` attempts, with jittered backoff)
    /// when another writer got there first; see the module doc for what a failed transaction
    /// may have left and how it is judged.
    pub async fn commit(
        &self,
        task_id: Uuid,
        user_id: Uuid,
        mut plan: impl FnMut(Option<&TaskRecord>) -> Result<Plan, ApiError>,
    ) -> Result<Commit, ApiError> {
        let number = self.shard_of(task_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let turn = self.lock_shard(number).await;
            // Checked under the turn, so every write of the attempt is made while the lease holds.
            let shard = (self.lease.id().await?, number);
            let key = Self::key_of(shard);
            let state = self.repository.read_change(task_id, user_id, &key).await?;
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
            if state.outbox_bytes() > SHARD_BUDGET_BYTES {
                metrics::counter!("task_api_outbox_full_total").increment(1);
                return Err(ApiError::Unavailable(format!(
                    "outbox shard `{key}` holds {} bytes of unpublished events (limit {SHARD_BUDGET_BYTES}); \
                     the broker is not taking them",
                    state.outbox_bytes()
                )));
            }
            record.push_event(entry.event_id);
            let mut pending = state.outbox().entries.clone();
            let applied = self.apply_marks(shard, &mut pending);
            pending.push(entry.clone());
            let error = match self
                .repository
                .write_change(&state, &record, &OutboxShard { entries: pending })
                .await
            {
                Ok(()) => {
                    self.forget(shard, &applied);
                    return Ok(Commit::Committed(Committed::new(shard, record, entry)));
                }
                Err(error) => error,
            };
            let after = self.repository.read_change(task_id, user_id, &key).await?;
            if after
                .record()
                .is_some_and(|r| r.has_committed(entry.event_ref()))
            {
                // The task write applied and something else did not. When the change opens a
                // task, the failed write may be the head's, whose etag kept the open-task count
                // exact: the cap is checked again as the summary is added, and the change is
                // taken back if the bucket filled up meanwhile (`repository::limit`).
                let limit = self.repository.limit();
                if opens(state.record(), &record) {
                    let cap = limit.cap_of(state.bucket());
                    if self.repository.repair_index(&record, Some(cap)).await? == Repair::Full {
                        if self.repository.undo_change(&after, state.record()).await? {
                            tracing::warn!(%error, event_id = %entry.event_id,
                                "transaction failed in part and the bucket reached its open-task cap meanwhile; change taken back");
                            return Err(limit.reached(state.bucket()));
                        }
                        tracing::warn!(%error, event_id = %entry.event_id,
                            "a change past the open-task cap could not be taken back; the cap is passed by one");
                    }
                }
                // The shard is this process's alone and we hold its turn, so the append below
                // (made, unlike the transaction's, knowing the change committed) has no
                // competitor.
                tracing::warn!(%error, event_id = %entry.event_id,
                    "transaction reported failure but the task change committed; recording the event");
                entry.committed = true;
                let recorded = entry.clone();
                self.repository
                    .rewrite_outbox_shard(&key, false, |s| {
                        match s
                            .entries
                            .iter_mut()
                            .find(|e| e.event_id == recorded.event_id)
                        {
                            Some(existing) if existing.committed => false,
                            Some(existing) => {
                                existing.committed = true;
                                true
                            }
                            None => {
                                s.entries.push(recorded.clone());
                                true
                            }
                        }
                    })
                    .await?;
                drop(turn);
                self.repository.repair_index(&record, None).await?;
                return Ok(Commit::Committed(Committed::new(shard, record, entry)));
            }
            drop(turn);
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
        let Committed {
            shard,
            record,
            entry,
        } = committed;
        match self.send(&entry).await {
            Ok(()) => {
                metrics::counter!("task_api_events_published_total", "path" => "direct", "topic" => entry.topic.clone()).increment(1);
                self.mark(shard, entry.event_id, true);
            }
            Err(error) => {
                metrics::counter!("task_api_publish_failures_total").increment(1);
                tracing::warn!(%error, event_id = %entry.event_id, topic = %entry.topic,
                    "publish after commit failed; the outbox relay will retry");
                self.mark(shard, entry.event_id, false);
            }
        }
        record
    }
}
