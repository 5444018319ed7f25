//! Task operations in domain terms: what a create, update, completion or deletion makes of a
//! task, and the event it produces. Each change goes through [`Outbox::commit`], which writes it
//! with its event in one etag-checked transaction (after one read of the task, none for a
//! create) and retries when another writer got there first, so concurrent updates never lose a
//! write; then [`Outbox::publish`] sends the event. The index is projected afterwards, off the
//! request path.

use chrono::Utc;
use events::{
    Envelope, EventPayload, TaskCompleted, TaskCreated, TaskDeleted, TaskSnapshot, TaskStatus,
    TaskUpdated,
};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::listing::{ListQuery, TaskPage, list};
use crate::model::{Changes, NewTask, TaskRecord};
use crate::outbox::{Commit, Outbox, OutboxEntry, Plan};
use crate::repository::TaskRepository;

/// The operations and what they need; cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskService {
    repository: TaskRepository,
    outbox: Outbox,
    app_id: String,
}

impl TaskService {
    /// `app_id` is the `source` of the events.
    pub fn new(repository: TaskRepository, outbox: Outbox, app_id: String) -> Self {
        Self {
            repository,
            outbox,
            app_id,
        }
    }

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
            committed: false,
            user_id: Some(task.user_id),
            slot: None,
        })
    }

    /// Commits one change and publishes its event; `fresh`: a create (nothing to read).
    async fn change(
        &self,
        task_id: Uuid,
        fresh: bool,
        plan: impl FnMut(Option<&TaskRecord>) -> Result<Plan, ApiError>,
    ) -> Result<TaskRecord, ApiError> {
        Ok(match self.outbox.commit(task_id, fresh, plan).await? {
            Commit::Unchanged(record) => record,
            Commit::Committed(committed) => self.outbox.publish(committed).await,
        })
    }

    /// Creates a task owned by `user`: one transaction (the record, its event's outbox entry
    /// and an open-task slot, [`crate::repository::limit`]) and one publish. Refused with 409
    /// when the user has `MAX_OPEN_TASKS_PER_USER` open tasks.
    pub async fn create(
        &self,
        user: &AuthUser,
        new: NewTask,
        ctx: &RequestContext,
    ) -> Result<TaskRecord, ApiError> {
        let task_id = Uuid::now_v7();
        let now = Utc::now();
        self.change(task_id, true, |current| {
            if current.is_some() {
                return Err(ApiError::Internal(format!(
                    "task id {task_id} already exists"
                )));
            }
            let record = TaskRecord {
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
                slot: None,
            };
            let entry = self.event(
                ctx,
                &record.task,
                TaskCreated {
                    task: record.task.clone(),
                },
            )?;
            Ok(Plan::Change(record, entry))
        })
        .await
    }

    /// Reads a task the caller owns.
    pub async fn get(&self, user: &AuthUser, task_id: Uuid) -> Result<TaskRecord, ApiError> {
        match self.repository.get(task_id).await? {
            Some(record) if visible(&record, user) => Ok(record),
            _ => Err(ApiError::NotFound),
        }
    }

    /// One page of the caller's tasks, with this process's changes not yet projected into the
    /// index shown over it.
    pub async fn list(&self, user: &AuthUser, query: &ListQuery) -> Result<TaskPage, ApiError> {
        let unprojected = self.outbox.unprojected(user.user_id);
        list(&self.repository, unprojected, user, query).await
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
        self.change(task_id, false, |current| {
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
        self.change(task_id, false, |current| {
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
        self.change(task_id, false, |current| {
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
            Ok(Plan::Change(record, entry))
        })
        .await
        .map(|_| ())
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
