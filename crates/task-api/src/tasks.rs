//! Task operations: every change is a read-modify-write of `task:{id}`, the owner's index and
//! an outbox shard in one etag-checked state transaction, retried (bounded, with jittered
//! backoff) when another writer got there first, so concurrent updates never lose a write.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use dapr_http::{DaprClient, DaprError, SaveItem, TransactionOp};
use events::{
    Envelope, EventPayload, TaskCompleted, TaskCreated, TaskDeleted, TaskSnapshot, TaskStatus,
    TaskUpdated,
};
use rand::Rng;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::model::{Changes, NewTask, TaskRecord};
use crate::outbox::{Outbox, OutboxEntry, OutboxShard};
use crate::store::{UserIndex, index_key, outbox_key, task_key};

/// Jittered exponential backoff for conflict retries: up to 2, 4, 8 … 128 ms.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 2u64 << attempt.min(6);
    Duration::from_micros(rand::rng().random_range(200..=cap * 1000))
}

/// The operations and the settings they need; cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskService {
    pub dapr: DaprClient,
    pub store: String,
    pub app_id: String,
    pub outbox: Outbox,
    pub retries: u32,
    pub tombstone_ttl: Duration,
    pub crash_after_commit: bool,
}

/// What a planner decided for the current state of a task.
enum Plan {
    /// Nothing to write; answer with this record.
    Unchanged(TaskRecord),
    /// Write this record and record this event.
    Change(TaskRecord, OutboxEntry),
}

/// State read at the start of an attempt.
struct Snapshot {
    task: Option<(TaskRecord, Option<String>)>,
    index: (UserIndex, Option<String>),
    shard: (OutboxShard, Option<String>),
}

fn decode<T: serde::de::DeserializeOwned + Default>(
    value: Option<Box<RawValue>>,
    key: &str,
) -> Result<T, ApiError> {
    match value {
        None => Ok(T::default()),
        Some(value) => serde_json::from_str(value.get())
            .map_err(|e| ApiError::Internal(format!("state key `{key}` is unreadable: {e}"))),
    }
}

impl TaskService {
    /// Builds the outbox entry (and so the event) for a change of `task`.
    fn event<T: EventPayload>(
        &self,
        ctx: &RequestContext,
        task: &TaskSnapshot,
        data: T,
    ) -> Result<OutboxEntry, ApiError> {
        let envelope = Envelope::new(self.app_id.clone(), ctx.correlation_id.clone(), data);
        let json = serde_json::value::to_raw_value(&envelope)
            .map_err(|e| ApiError::Internal(format!("cannot encode an envelope: {e}")))?;
        Ok(OutboxEntry {
            event_id: envelope.event_id,
            task_id: task.task_id,
            version: task.version,
            topic: T::TOPIC.as_str().to_owned(),
            envelope: json,
            traceparent: ctx.traceparent.clone(),
            recorded_at: envelope.timestamp,
        })
    }

    async fn read(&self, task_id: Uuid, user_id: Uuid, shard: u32) -> Result<Snapshot, ApiError> {
        let keys = [
            task_key(task_id),
            index_key(user_id, task_id),
            outbox_key(shard),
        ];
        let mut items = self
            .dapr
            // Raw JSON text, decoded straight into each key's type below.
            .get_bulk_state::<Box<RawValue>>(&self.store, &keys)
            .await?
            .into_iter();
        let mut next = |key: &str| -> Result<(Option<Box<RawValue>>, Option<String>), ApiError> {
            let item = items
                .next()
                .ok_or_else(|| ApiError::Internal("bulk get returned too few items".into()))?;
            if let Some(error) = item.error {
                return Err(ApiError::Internal(format!("reading `{key}`: {error}")));
            }
            Ok((item.value, item.etag))
        };
        let (task, task_etag) = next(&keys[0])?;
        let (index, index_etag) = next(&keys[1])?;
        let (shard, shard_etag) = next(&keys[2])?;
        let task = match task {
            None => None,
            Some(value) => Some((
                serde_json::from_str::<TaskRecord>(value.get()).map_err(|e| {
                    ApiError::Internal(format!("task record `{}` is unreadable: {e}", keys[0]))
                })?,
                task_etag,
            )),
        };
        Ok(Snapshot {
            task,
            index: (decode(index, &keys[1])?, index_etag),
            shard: (decode(shard, &keys[2])?, shard_etag),
        })
    }

    /// The retry loop shared by every change.
    async fn commit(
        &self,
        task_id: Uuid,
        user_id: Uuid,
        mut plan: impl FnMut(Option<&TaskRecord>) -> Result<Plan, ApiError>,
    ) -> Result<TaskRecord, ApiError> {
        let shard = self.outbox.shard_of(task_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Writers of this shard in this process take turns (see `Outbox::lock_shard`); the
            // turn ends before the publish, which does not touch the shard.
            let turn = self.outbox.lock_shard(shard).await;
            let snapshot = self.read(task_id, user_id, shard).await?;
            let current = snapshot.task.as_ref().map(|(record, _)| record);
            let (record, entry) = match plan(current)? {
                Plan::Unchanged(record) => return Ok(record),
                Plan::Change(record, entry) => (record, entry),
            };
            let swept = self.outbox.published_in(shard);
            let ops = self.operations(&snapshot, &record, &entry, &swept)?;
            match self.dapr.transact_state(&self.store, &ops).await {
                Ok(()) => {
                    self.outbox.forget(shard, &swept);
                    drop(turn);
                    self.after_commit(&entry).await;
                    return Ok(record);
                }
                Err(error) => {
                    // Find out what happened before deciding: the change may have committed
                    // (partial transaction), another writer may have won, or the store failed.
                    let after = self.read(task_id, user_id, shard).await?;
                    // The repair below writes the shard itself, under its own turn.
                    drop(turn);
                    if after
                        .task
                        .as_ref()
                        .is_some_and(|(r, _)| r.has_committed(entry.event_ref()))
                    {
                        tracing::warn!(%error, event_id = %entry.event_id,
                            "transaction reported failure but the task change committed; recording the event");
                        self.outbox.append(&entry).await?;
                        self.repair_index(&record).await?;
                        self.after_commit(&entry).await;
                        return Ok(record);
                    }
                    let moved = etag(&after.task) != etag(&snapshot.task)
                        || after.index.1 != snapshot.index.1
                        || after.shard.1 != snapshot.shard.1;
                    if !moved && !error.is_etag_conflict() {
                        return Err(error.into());
                    }
                    if !moved {
                        // Nothing changed under us, so this was not a conflict: a store failure.
                        return Err(ApiError::Dapr(DaprError::Server {
                            status: 503,
                            code: error.error_code().unwrap_or_default().to_owned(),
                            message: error.to_string(),
                        }));
                    }
                    metrics::counter!("task_api_conflict_retries_total").increment(1);
                    if attempt >= self.retries {
                        return Err(ApiError::Contention);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    fn operations(
        &self,
        snapshot: &Snapshot,
        record: &TaskRecord,
        entry: &OutboxEntry,
        published: &HashSet<Uuid>,
    ) -> Result<Vec<TransactionOp>, ApiError> {
        let mut ops = Vec::with_capacity(3);
        let mut task = SaveItem::new(task_key(record.task.task_id), record)?;
        task = match &snapshot.task {
            Some((_, etag)) => task.etag(etag.clone()),
            None => task.first_write(),
        };
        if record.deleted {
            task = task.ttl(self.tombstone_ttl);
        }
        ops.push(TransactionOp::Upsert(task));
        let (mut index, index_etag) = snapshot.index.clone();
        if index.reconcile(record) {
            let item = SaveItem::new(index_key(record.task.user_id, record.task.task_id), &index)?;
            ops.push(TransactionOp::Upsert(with_etag(item, index_etag)));
        }
        let (mut shard, shard_etag) = snapshot.shard.clone();
        // Entries already published leave with this write (no separate clean-up write).
        shard.entries.retain(|e| !published.contains(&e.event_id));
        shard.entries.push(entry.clone());
        let item = SaveItem::new(outbox_key(self.outbox.shard_of(entry.task_id)), &shard)?;
        ops.push(TransactionOp::Upsert(with_etag(item, shard_etag)));
        Ok(ops)
    }

    /// Makes the owner's index agree with a committed record (after a partial transaction the
    /// index write may be the operation that failed).
    async fn repair_index(&self, record: &TaskRecord) -> Result<(), ApiError> {
        let key = index_key(record.task.user_id, record.task.task_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut index, etag) =
                match self.dapr.get_state::<UserIndex>(&self.store, &key).await? {
                    Some(entry) => (entry.value, entry.etag),
                    None => (UserIndex::default(), None),
                };
            if !index.reconcile(record) {
                return Ok(());
            }
            let item = with_etag(SaveItem::new(key.clone(), &index)?, etag);
            match self.dapr.save_state(&self.store, &[item]).await {
                Ok(()) => return Ok(()),
                Err(error)
                    if error.is_etag_conflict() || matches!(error, DaprError::Server { .. }) =>
                {
                    if attempt >= self.retries {
                        return Err(ApiError::Contention);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn after_commit(&self, entry: &OutboxEntry) {
        metrics::counter!("task_api_changes_committed_total", "topic" => entry.topic.clone())
            .increment(1);
        if self.crash_after_commit {
            tracing::error!(event_id = %entry.event_id,
                "TASK_API_FAULT_CRASH_AFTER_COMMIT is set: aborting after the commit, before publishing");
            std::process::abort();
        }
        self.outbox.publish_committed(entry).await;
    }

    /// Creates a task owned by `user`.
    pub async fn create(
        &self,
        user: &AuthUser,
        new: NewTask,
        ctx: &RequestContext,
    ) -> Result<TaskRecord, ApiError> {
        let task_id = Uuid::now_v7();
        let now = Utc::now();
        self.commit(task_id, user.user_id, |current| {
            if current.is_some() {
                return Err(ApiError::Internal(format!(
                    "task id {task_id} already exists"
                )));
            }
            let mut record = TaskRecord {
                task: TaskSnapshot {
                    task_id,
                    user_id: user.user_id,
                    user_email: user.email.clone(),
                    title: new.title.clone(),
                    description: new.description.clone(),
                    priority: new.priority,
                    due_date: new.due_date,
                    status: TaskStatus::Open,
                    version: 1,
                    created_at: now,
                    updated_at: now,
                },
                deleted: false,
                recent_events: Vec::new(),
            };
            let entry = self.event(
                ctx,
                &record.task,
                TaskCreated {
                    task: record.task.clone(),
                },
            )?;
            record.push_event(entry.event_id);
            Ok(Plan::Change(record, entry))
        })
        .await
    }

    /// Reads a task the caller owns.
    pub async fn get(&self, user: &AuthUser, task_id: Uuid) -> Result<TaskRecord, ApiError> {
        let record = self
            .dapr
            .get_state::<TaskRecord>(&self.store, &task_key(task_id))
            .await?;
        match record {
            Some(entry) if visible(&entry.value, user) => Ok(entry.value),
            _ => Err(ApiError::NotFound),
        }
    }

    /// Applies a partial update; `if_match` is the version the client last saw.
    pub async fn update(
        &self,
        user: &AuthUser,
        task_id: Uuid,
        changes: Changes,
        if_match: Option<u64>,
        ctx: &RequestContext,
    ) -> Result<TaskRecord, ApiError> {
        self.commit(task_id, user.user_id, |current| {
            let mut record = owned(current, user)?;
            check_precondition(&record, if_match)?;
            let changed = changes.apply(&mut record.task);
            if changed.is_empty() {
                return Ok(Plan::Unchanged(record));
            }
            bump(&mut record);
            let entry = self.event(
                ctx,
                &record.task,
                TaskUpdated {
                    task: record.task.clone(),
                    changed_fields: changed,
                },
            )?;
            record.push_event(entry.event_id);
            Ok(Plan::Change(record, entry))
        })
        .await
    }

    /// Marks a task completed; completing a completed task changes nothing.
    pub async fn complete(
        &self,
        user: &AuthUser,
        task_id: Uuid,
        if_match: Option<u64>,
        ctx: &RequestContext,
    ) -> Result<TaskRecord, ApiError> {
        self.commit(task_id, user.user_id, |current| {
            let mut record = owned(current, user)?;
            check_precondition(&record, if_match)?;
            if record.task.status == TaskStatus::Completed {
                return Ok(Plan::Unchanged(record));
            }
            record.task.status = TaskStatus::Completed;
            bump(&mut record);
            let entry = self.event(
                ctx,
                &record.task,
                TaskCompleted {
                    task: record.task.clone(),
                },
            )?;
            record.push_event(entry.event_id);
            Ok(Plan::Change(record, entry))
        })
        .await
    }

    /// Deletes a task, leaving a tombstone that proves the deletion to the outbox relay.
    pub async fn delete(
        &self,
        user: &AuthUser,
        task_id: Uuid,
        if_match: Option<u64>,
        ctx: &RequestContext,
    ) -> Result<(), ApiError> {
        self.commit(task_id, user.user_id, |current| {
            let mut record = owned(current, user)?;
            check_precondition(&record, if_match)?;
            bump(&mut record);
            record.deleted = true;
            let entry = self.event(
                ctx,
                &record.task,
                TaskDeleted {
                    task: record.task.clone(),
                },
            )?;
            record.push_event(entry.event_id);
            Ok(Plan::Change(record, entry))
        })
        .await
        .map(|_| ())
    }
}

fn etag(task: &Option<(TaskRecord, Option<String>)>) -> Option<&str> {
    task.as_ref().and_then(|(_, etag)| etag.as_deref())
}

fn with_etag(item: SaveItem, etag: Option<String>) -> SaveItem {
    match etag {
        Some(etag) => item.etag(Some(etag)),
        None => item.first_write(),
    }
}

fn visible(record: &TaskRecord, user: &AuthUser) -> bool {
    !record.deleted && record.task.user_id == user.user_id
}

/// Another user's task is reported exactly like a missing one.
fn owned(current: Option<&TaskRecord>, user: &AuthUser) -> Result<TaskRecord, ApiError> {
    match current {
        Some(record) if visible(record, user) => Ok(record.clone()),
        _ => Err(ApiError::NotFound),
    }
}

fn check_precondition(record: &TaskRecord, if_match: Option<u64>) -> Result<(), ApiError> {
    match if_match {
        Some(expected) if expected != record.task.version => Err(ApiError::PreconditionFailed {
            current: record.task.version,
        }),
        _ => Ok(()),
    }
}

fn bump(record: &mut TaskRecord) {
    record.task.version += 1;
    record.task.updated_at = Utc::now();
}
