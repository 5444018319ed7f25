//! This service's record of one task (`task:{id}`): what the projection keeps and the policy
//! judges. It sits below both, so neither has to import the other to name it.

use chrono::{DateTime, Utc};
use events::envelope::rfc3339_micros;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The state key of a task's projection.
pub fn task_key(task: Uuid) -> String {
    format!("task:{task}")
}

/// What this service remembers about one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: Uuid,
    /// The version of the last event applied.
    pub version: u64,
    /// False once the task is completed or deleted (a tombstone).
    pub open: bool,
    #[serde(default, with = "rfc3339_micros::option")]
    pub due_date: Option<DateTime<Utc>>,
    pub user_id: Uuid,
    pub user_email: String,
    pub title: String,
    /// The bucket the task is filed in, if any.
    #[serde(default)]
    pub filed_in: Option<i64>,
    /// The due date a reminder was published for: the "reminded" flag of (task, due date).
    #[serde(default, with = "rfc3339_micros::option")]
    pub reminded_for: Option<DateTime<Utc>>,
    /// The event that set the current due date: the reminder's causation id.
    pub scheduled_by: Uuid,
    /// The correlation id of that event, carried into the reminder.
    pub correlation_id: String,
    /// The W3C `traceparent` under which that event was handled: the reminder's publish is a
    /// child of it, so the reminder shows up in the task's trace. Absent in records written
    /// before traces were kept, and when the delivery had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    pub(crate) fn record(version: u64, due: Option<DateTime<Utc>>) -> TaskRecord {
        TaskRecord {
            task_id: Uuid::from_u128(1),
            version,
            open: true,
            due_date: due,
            user_id: Uuid::from_u128(2),
            user_email: "a@example.com".into(),
            title: "write report".into(),
            filed_in: None,
            reminded_for: None,
            scheduled_by: Uuid::from_u128(3),
            correlation_id: "corr-1".into(),
            traceparent: None,
        }
    }
}
