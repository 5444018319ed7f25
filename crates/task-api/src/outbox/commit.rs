//! [`Outbox::commit`] and [`Outbox::publish`]: one change, its event recorded with it, then
//! published.

use std::sync::atomic::Ordering;

use dapr_http::DaprError;
use uuid::Uuid;

use super::book::{EntryId, Stage};
use super::{Outbox, OutboxEntry};
use crate::error::ApiError;
use crate::model::TaskRecord;
use crate::repository::limit::{Pick, SlotPicker, closes, opens};
use crate::repository::{ChangeState, ReadBack};

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

/// Leaves an entry whose write ended without a verdict (dropped: the runtime shutting down, a
/// panic) to the relay ([`super::book::Stage::Unknown`]): the relay never judges one in flight.
struct InFlightGuard<'a> {
    outbox: &'a Outbox,
    id: EntryId,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.outbox.unknown_if_in_flight(self.id);
    }
}

/// Tries of the undo of a create whose slot collided before its outcome is read instead.
const UNDO_TRIES: u32 = 3;

/// How one attempt of a change ended when it did not commit.
#[derive(Debug)]
enum Attempt {
    /// Committed with its event recorded; publish it next.
    Committed(Box<Committed>),
    /// Lost a race for the task, or its slot `collided` was another's: try again.
    Retry { collided: Option<u32> },
}

impl Outbox {
    /// Applies one change of task `task_id`: reads the task (unless `fresh`: a create, whose new
    /// id nobody else names, so there is nothing to read), lets `plan` decide, and writes the new
    /// record and its event's entry (under a per-event key of its own) in one transaction. A
    /// create takes its open-task slot in that transaction; a reopen takes it with a save of its
    /// own first, so a reopen whose slot collided never wrote its task (taking back a write of
    /// an existing task would restore an older version over one others may have seen).
    /// Retried on a fresh read (up to `CONFLICT_RETRIES` attempts, with jittered backoff) when
    /// another writer got there first or the slot was taken; see the module doc for what a
    /// failed transaction may have left and how it is judged.
    ///
    /// The writes and their judging run in a task of their own, so a client that hangs up
    /// cannot stop a change between its write and the read and undo that settle it.
    pub async fn commit(
        &self,
        task_id: Uuid,
        fresh: bool,
        mut plan: impl FnMut(Option<&TaskRecord>) -> Result<Plan, ApiError>,
    ) -> Result<Commit, ApiError> {
        let mut slots = SlotPicker::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let state = if fresh {
                ChangeState::fresh(task_id)
            } else {
                self.repository.read_change(task_id).await?
            };
            let (mut record, mut entry) = match plan(state.record())? {
                Plan::Unchanged(record) => return Ok(Commit::Unchanged(record)),
                Plan::Change(record, entry) => (record, entry),
            };
            let user_id = record.task.user_id;
            entry.user_id = Some(user_id);
            let takes = opens(state.record(), &record);
            if takes {
                let slot = self.pick_slot(user_id, &mut slots).await?;
                record.slot = Some(slot);
                entry.slot = Some(slot);
            } else if closes(state.record(), &record) {
                // Released by the cleaner once the change is known committed.
                entry.slot = state.record().and_then(|previous| previous.slot);
                record.slot = None;
            }
            self.check_budget()?;
            let outbox = self.clone();
            let write =
                tokio::spawn(async move { outbox.write(state, record, entry, takes).await });
            let outcome = write.await.map_err(|error| {
                ApiError::Internal(format!("a change's write stopped: {error}"))
            })??;
            match outcome {
                Attempt::Committed(committed) => return Ok(Commit::Committed(*committed)),
                Attempt::Retry { collided: None } => {
                    metrics::counter!("task_api_conflict_retries_total").increment(1);
                }
                Attempt::Retry { collided: Some(n) } => {
                    slots.collided(n);
                    self.slot_hints.collided(user_id, self.repository.limit());
                    metrics::counter!("task_api_slot_collisions_total").increment(1);
                }
            }
            self.repository.back_off(attempt).await?;
        }
    }

    /// One attempt of a change planned over `state`: takes a reopen's slot, writes the
    /// transaction and, when it failed, reads back what it did and takes back a create whose
    /// slot was another task's.
    async fn write(
        &self,
        state: ChangeState,
        mut record: TaskRecord,
        mut entry: OutboxEntry,
        takes: bool,
    ) -> Result<Attempt, ApiError> {
        let task_id = record.task.task_id;
        let user_id = record.task.user_id;
        // A reopen: an existing task, whose every write others may see.
        let taken_first = takes && state.record().is_some();
        // Taken right before the write, so every key is written while the lease holds.
        let instance = self.lease.id().await?;
        let id = (instance, self.allocate(instance).await?);
        record.push_event(entry.event_id);
        // The relay's grace period runs from the write, not from when the change was planned.
        entry.recorded_at = chrono::Utc::now();
        let key = self.track(id, &entry, &record);
        let _settled = InFlightGuard { outbox: self, id };
        if taken_first && let Some(n) = record.slot {
            match self.repository.take_slot(user_id, n, task_id).await {
                Ok(true) => {}
                Ok(false) => {
                    self.forget(&[id]);
                    return Ok(Attempt::Retry { collided: Some(n) });
                }
                Err(error) => {
                    // The save may still apply: the entry's slot is released unless the task
                    // holds it.
                    self.set_stage(id, Stage::Abandoned);
                    return Err(error.into());
                }
            }
        }
        let error = match self
            .repository
            .write_change(&state, &record, takes && !taken_first, &key, &entry)
            .await
        {
            Ok(()) => {
                self.set_stage(id, Stage::Committed);
                if takes {
                    // The task holds the slot it took: nothing to release.
                    self.mark_slots_settled(&[id]);
                }
                return Ok(Attempt::Committed(Box::new(Committed::new(
                    id, record, entry,
                ))));
            }
            Err(error) => error,
        };
        let slot = record
            .slot
            .filter(|_| takes && !taken_first)
            .map(|n| (user_id, n));
        let after = match self.repository.read_back(task_id, &key, slot).await {
            Ok(after) => after,
            Err(read_error) => {
                // The relay judges the entry from the task record after the grace period.
                self.set_stage(id, Stage::Unknown);
                tracing::warn!(%error, %read_error, event_id = %entry.event_id,
                    "transaction failed and its outcome could not be read; the relay will judge it");
                return Err(read_error.into());
            }
        };
        // A reopen's slot, taken before the transaction, is the task's whatever it did.
        let holds_slot = taken_first || after.slot_holder == Some(task_id);
        if after
            .record()
            .is_some_and(|r| r.has_committed(entry.event_ref()))
        {
            if let Some((_, n)) = slot
                && !holds_slot
            {
                // The task write applied and the slot was another task's: the create must not
                // stand (`repository::limit`). Taken back, it is tried with another slot.
                if self
                    .take_back(id, &error, &after, &state, &key, &entry)
                    .await?
                {
                    return Ok(Attempt::Retry { collided: Some(n) });
                }
                metrics::counter!("task_api_open_task_limit_passed_total").increment(1);
                tracing::error!(%error, event_id = %entry.event_id,
                    "a change whose open-task slot was taken could not be taken back; the limit is passed by one");
            }
            // From here the event is published whatever the store does next: this process
            // holds it as committed, publishes it below, and its relay retries a failed
            // publish. The key is written too, so a replica publishes it if this process
            // dies first; when the store refuses that as well, the event is not lost while
            // this process lives.
            self.set_stage(id, Stage::Committed);
            if holds_slot {
                self.mark_slots_settled(&[id]);
            }
            entry.committed = true;
            tracing::warn!(%error, event_id = %entry.event_id,
                "transaction reported failure but the task change committed; recording the event");
            if let Err(save_error) = self.repository.save_outbox_entry(&key, &entry).await {
                tracing::error!(%save_error, event_id = %entry.event_id,
                    "could not record the event of a committed change; it is published from memory");
            }
            return Ok(Attempt::Committed(Box::new(Committed::new(
                id, record, entry,
            ))));
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
        let slot_written = after.slot_holder == Some(task_id);
        if after.wrote_entry || holds_slot {
            // Written without its change: a phantom entry, or a slot the task does not
            // hold; deleted (and counted) or released by the next sweep.
            self.set_stage(id, Stage::Abandoned);
        } else {
            self.forget(&[id]);
        }
        if !after.moved_since(&state) && !after.wrote_entry && !slot_written {
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
        Ok(Attempt::Retry { collided: None })
    }

    /// Takes back a create whose slot was another task's (see [`Self::write`]); returns whether
    /// it is undone (its entry then abandoned). The undo is checked against the etag read back,
    /// so it is tried again on a failure (a late one of an earlier try makes a later one find
    /// the task gone, which also succeeds). When every try failed, a second read says whether
    /// the create stands: then it is answered as committed (the limit passed by one, logged),
    /// never as a failure of a create that exists and whose event the relay would publish.
    async fn take_back(
        &self,
        id: EntryId,
        error: &DaprError,
        after: &ReadBack,
        state: &ChangeState,
        key: &str,
        entry: &OutboxEntry,
    ) -> Result<bool, ApiError> {
        let mut tries = 0;
        let undone = loop {
            tries += 1;
            match self.repository.undo_change(after, state.record()).await {
                Ok(undone) => break undone,
                Err(undo_error) if tries < UNDO_TRIES => {
                    tracing::debug!(%undo_error, event_id = %entry.event_id,
                        "could not take back a create whose slot was taken; trying again");
                    tokio::time::sleep(crate::repository::backoff(tries)).await;
                }
                Err(undo_error) => {
                    match self.repository.read_back(entry.task_id, key, None).await {
                        Ok(again) => {
                            break !again
                                .record()
                                .is_some_and(|r| r.has_committed(entry.event_ref()));
                        }
                        Err(read_error) => {
                            self.set_stage(id, Stage::Unknown);
                            tracing::warn!(%error, %undo_error, %read_error, event_id = %entry.event_id,
                                "a create whose open-task slot was taken could not be taken back nor read; the relay will judge it");
                            return Err(read_error.into());
                        }
                    }
                }
            }
        };
        if undone {
            self.set_stage(id, Stage::Abandoned);
        }
        Ok(undone)
    }

    /// The next open-task slot of `user_id` to try: a random one, or, after a few collisions,
    /// one of those a bulk read finds free. When none is free, this process's closes of the
    /// user's tasks that have not released their slots yet release them first; then the limit
    /// is reached.
    async fn pick_slot(&self, user_id: Uuid, slots: &mut SlotPicker) -> Result<u32, ApiError> {
        let limit = self.repository.limit();
        if slots.is_fresh() && self.slot_hints.crowded(user_id) {
            slots.read_first();
        }
        let hint = slots
            .is_fresh()
            .then(|| self.slot_hints.take(user_id, limit));
        if let Pick::Slot(n) = slots.next(limit, hint) {
            return Ok(n);
        }
        // A release by the cleaner between the read below and the settling after it would be
        // missed by both: the count of releases tells.
        let releases = self.slot_releases.load(Ordering::SeqCst);
        let mut any = slots.feed(self.free_slots(user_id).await?);
        if !any
            && (self.settle_slots_of(user_id).await
                || self.slot_releases.load(Ordering::SeqCst) != releases)
        {
            any = slots.feed(self.free_slots(user_id).await?);
        }
        match slots.next(limit, None) {
            Pick::Slot(n) if any => Ok(n),
            _ => Err(limit.reached()),
        }
    }

    /// The free slots of `user_id`, remembered as crowded or not for its next change.
    async fn free_slots(&self, user_id: Uuid) -> Result<Vec<u32>, ApiError> {
        let free = self.repository.free_slots(user_id).await?;
        self.slot_hints
            .read_free(user_id, free.len(), self.repository.limit());
        Ok(free)
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
