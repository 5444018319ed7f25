//! One task and the envelope of every topic about it, as its producers publish them.
//!
//! Two ways to use a [`TaskFixture`]: the participles (`created`, `updated`, `completed`,
//! `deleted`) describe the task as it is now, at its current version, which is what a test of
//! stale or reordered events wants (`task.at(3, due).updated()`); the verbs (`update`,
//! `complete`, `delete`) move the task on one version first, which is what a test of a task's
//! life wants.

use chrono::{DateTime, Utc};
use events::{
    Channel, Envelope, EventPayload, NotificationFailed, NotificationSent, Priority, TaskCompleted,
    TaskCreated, TaskDeleted, TaskDueSoon, TaskSnapshot, TaskStatus, TaskUpdated, apps,
};
use uuid::Uuid;

/// The owner's address unless a test names another.
pub const OWNER_EMAIL: &str = "owner@example.com";
/// The title unless a test names another.
pub const TITLE: &str = "Write the report";

/// A task as task-api describes it in its events.
#[derive(Debug, Clone)]
pub struct TaskFixture {
    pub snapshot: TaskSnapshot,
}

impl Default for TaskFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskFixture {
    /// A new open task of a new user, high priority, due in two hours, at version 1.
    pub fn new() -> Self {
        let now = Utc::now();
        Self {
            snapshot: TaskSnapshot {
                task_id: Uuid::now_v7(),
                user_id: Uuid::now_v7(),
                user_email: OWNER_EMAIL.into(),
                title: TITLE.into(),
                description: String::new(),
                priority: Priority::High,
                due_date: Some(now + chrono::Duration::hours(2)),
                status: TaskStatus::Open,
                version: 1,
                created_at: now,
                updated_at: now,
            },
        }
    }

    pub fn email(mut self, email: &str) -> Self {
        self.snapshot.user_email = email.into();
        self
    }

    pub fn title(mut self, title: &str) -> Self {
        self.snapshot.title = title.into();
        self
    }

    pub fn description(mut self, description: &str) -> Self {
        self.snapshot.description = description.into();
        self
    }

    pub fn due(mut self, due: Option<DateTime<Utc>>) -> Self {
        self.snapshot.due_date = due;
        self
    }

    pub fn id(&self) -> Uuid {
        self.snapshot.task_id
    }

    pub fn user(&self) -> Uuid {
        self.snapshot.user_id
    }

    /// The same task at `version` with `due` (the state an update announces).
    pub fn at(&self, version: u64, due: Option<DateTime<Utc>>) -> Self {
        let mut next = self.clone();
        next.snapshot.version = version;
        next.snapshot.due_date = due;
        next
    }

    /// `task-created` for the task as it is.
    pub fn created(&self) -> Envelope<TaskCreated> {
        self.by_task_api(TaskCreated {
            task: self.snapshot.clone(),
        })
    }

    /// `task-updated` for the task as it is, naming the due date as what changed.
    pub fn updated(&self) -> Envelope<TaskUpdated> {
        self.by_task_api(TaskUpdated {
            task: self.snapshot.clone(),
            changed_fields: vec!["due_date".into()],
        })
    }

    /// `task-completed` for the task as it is (its status reads completed).
    pub fn completed(&self) -> Envelope<TaskCompleted> {
        let mut task = self.snapshot.clone();
        task.status = TaskStatus::Completed;
        self.by_task_api(TaskCompleted { task })
    }

    /// `task-deleted` for the task as it is.
    pub fn deleted(&self) -> Envelope<TaskDeleted> {
        self.by_task_api(TaskDeleted {
            task: self.snapshot.clone(),
        })
    }

    /// Renames the task (its title gains ` v<version>`) at the next version: `task-updated`.
    pub fn update(&mut self) -> Envelope<TaskUpdated> {
        self.snapshot.title = format!("{} v{}", self.snapshot.title, self.snapshot.version + 1);
        self.bump();
        self.by_task_api(TaskUpdated {
            task: self.snapshot.clone(),
            changed_fields: vec!["title".into()],
        })
    }

    /// Completes the task at the next version: `task-completed`.
    pub fn complete(&mut self) -> Envelope<TaskCompleted> {
        self.snapshot.status = TaskStatus::Completed;
        self.bump();
        self.completed()
    }

    /// Deletes the task at the next version: `task-deleted`.
    pub fn delete(&mut self) -> Envelope<TaskDeleted> {
        self.bump();
        self.deleted()
    }

    /// `task-due-soon` as reminder-scheduler publishes it for the task as it is.
    pub fn due_soon(&self) -> Envelope<TaskDueSoon> {
        let task = &self.snapshot;
        self.envelope(
            apps::REMINDER_SCHEDULER,
            TaskDueSoon {
                task_id: task.task_id,
                user_id: task.user_id,
                user_email: task.user_email.clone(),
                title: task.title.clone(),
                due_date: task.due_date.unwrap_or_else(Utc::now),
                task_version: task.version,
            },
        )
    }

    /// `notification-sent` as email-worker announces the email `trigger` (a due-soon) caused.
    pub fn notification_sent(&self, trigger: Uuid) -> Envelope<NotificationSent> {
        let task = &self.snapshot;
        self.envelope(
            apps::EMAIL_WORKER,
            NotificationSent {
                trigger_event_id: trigger,
                trigger_event_type: "task-due-soon".into(),
                task_id: task.task_id,
                user_id: task.user_id,
                channel: Channel::Email,
                recipient: task.user_email.clone(),
                subject: "Due soon".into(),
                sent_at: Utc::now(),
            },
        )
        .caused_by(trigger)
    }

    /// `notification-failed` as email-worker announces a failed email for `trigger` (a
    /// task-created).
    pub fn notification_failed(&self, trigger: Uuid, reason: &str) -> Envelope<NotificationFailed> {
        let task = &self.snapshot;
        self.envelope(
            apps::EMAIL_WORKER,
            NotificationFailed {
                trigger_event_id: trigger,
                trigger_event_type: "task-created".into(),
                task_id: task.task_id,
                user_id: task.user_id,
                channel: Channel::Email,
                recipient: task.user_email.clone(),
                reason: reason.into(),
                failed_at: Utc::now(),
            },
        )
        .caused_by(trigger)
    }

    fn bump(&mut self) {
        self.snapshot.version += 1;
        self.snapshot.updated_at = Utc::now();
    }

    fn by_task_api<T: EventPayload>(&self, data: T) -> Envelope<T> {
        self.envelope(apps::TASK_API, data)
    }

    /// Every event about the task shares its correlation id, as one request's events do.
    fn envelope<T: EventPayload>(&self, source: &str, data: T) -> Envelope<T> {
        Envelope::new(source, format!("corr-{}", self.id()), data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participles_describe_and_verbs_move_on() {
        let mut task = TaskFixture::new().title("Pay the rent");
        assert_eq!(task.created().data.task.version, 1);
        assert_eq!(task.at(3, None).updated().data.task.version, 3);
        assert_eq!(task.completed().data.task.version, 1);
        let updated = task.update();
        assert_eq!(updated.data.task.version, 2);
        assert_eq!(updated.data.task.title, "Pay the rent v2");
        assert_eq!(task.complete().data.task.version, 3);
        assert_eq!(task.delete().data.task.version, 4);
        assert_eq!(task.due_soon().source, apps::REMINDER_SCHEDULER);
        let trigger = Uuid::now_v7();
        let sent = task.notification_sent(trigger);
        assert_eq!(
            (sent.source.as_str(), sent.causation_id),
            (apps::EMAIL_WORKER, Some(trigger))
        );
        assert_eq!(sent.correlation_id, task.created().correlation_id);
    }
}
