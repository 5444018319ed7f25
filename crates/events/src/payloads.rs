//! Event payloads. Every task event carries the task's `version`, a per-task counter bumped on
//! every change, so consumers can drop stale or repeated events without any ordering guarantee
//! from the broker.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::rfc3339_micros;
use crate::{EventPayload, Topic};

/// How urgent a task is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Medium,
        Priority::High,
        Priority::Urgent,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    InProgress,
    Completed,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 3] = [
        TaskStatus::Open,
        TaskStatus::InProgress,
        TaskStatus::Completed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Completed => "completed",
        }
    }
}

/// The whole task as it stood after the change an event announces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskSnapshot {
    pub task_id: Uuid,
    /// The owner (the JWT `sub`).
    pub user_id: Uuid,
    /// Where notifications for this task go (the JWT `email` at creation).
    pub user_email: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub priority: Priority,
    #[serde(default, with = "rfc3339_micros::option")]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub due_date: Option<DateTime<Utc>>,
    pub status: TaskStatus,
    /// Per-task counter: 1 at creation, +1 per change (deletion included).
    pub version: u64,
    #[serde(with = "rfc3339_micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339_micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub updated_at: DateTime<Utc>,
}

/// A task was created (`version` 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskCreated {
    pub task: TaskSnapshot,
}

/// Fields of a task changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskUpdated {
    pub task: TaskSnapshot,
    /// Names of the fields that changed, e.g. `["title", "due_date"]`.
    pub changed_fields: Vec<String>,
}

/// A task was marked completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskCompleted {
    pub task: TaskSnapshot,
}

/// A task was deleted; `task` is its last state, with `version` bumped for the deletion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskDeleted {
    pub task: TaskSnapshot,
}

/// A task falls due soon. Published once per (task, due date) with a deterministic `event_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskDueSoon {
    pub task_id: Uuid,
    pub user_id: Uuid,
    pub user_email: String,
    pub title: String,
    #[serde(with = "rfc3339_micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub due_date: DateTime<Utc>,
    /// The task version the reminder was scheduled from.
    pub task_version: u64,
}

/// Which channel a notification went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
}

/// A notification was accepted by the mail server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationSent {
    /// The event that triggered the notification.
    pub trigger_event_id: Uuid,
    pub trigger_event_type: String,
    pub task_id: Uuid,
    pub user_id: Uuid,
    pub channel: Channel,
    pub recipient: String,
    pub subject: String,
    #[serde(with = "rfc3339_micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub sent_at: DateTime<Utc>,
}

/// A notification could not be delivered and will not be retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationFailed {
    pub trigger_event_id: Uuid,
    pub trigger_event_type: String,
    pub task_id: Uuid,
    pub user_id: Uuid,
    pub channel: Channel,
    pub recipient: String,
    /// Why it failed, e.g. the SMTP server's reply; never contains credentials.
    pub reason: String,
    #[serde(with = "rfc3339_micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub failed_at: DateTime<Utc>,
}

macro_rules! payload {
    ($ty:ty, $topic:expr, $version:expr, |$me:ident| $key:expr) => {
        impl EventPayload for $ty {
            const TOPIC: Topic = $topic;
            const SCHEMA_VERSION: u32 = $version;
            fn partition_key(&self) -> Option<String> {
                let $me = self;
                Some($key.to_string())
            }
        }
    };
}

payload!(TaskCreated, Topic::TaskCreated, 1, |e| e.task.task_id);
payload!(TaskUpdated, Topic::TaskUpdated, 1, |e| e.task.task_id);
payload!(TaskCompleted, Topic::TaskCompleted, 1, |e| e.task.task_id);
payload!(TaskDeleted, Topic::TaskDeleted, 1, |e| e.task.task_id);
payload!(TaskDueSoon, Topic::TaskDueSoon, 1, |e| e.task_id);
payload!(NotificationSent, Topic::NotificationSent, 1, |e| e.task_id);
payload!(NotificationFailed, Topic::NotificationFailed, 1, |e| e
    .task_id);
