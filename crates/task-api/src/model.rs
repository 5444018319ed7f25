//! The task as stored (`task:{id}`), the request bodies, the response view and input validation.

use chrono::{DateTime, Utc};
use events::{Priority, TaskSnapshot, TaskStatus};
use serde::{Deserialize, Deserializer, Serialize};
use service_kit::FieldError;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

/// How many (version, event id) pairs a record keeps: enough for the outbox relay to tell a
/// committed event from one whose transaction failed, long after the grace period.
pub const RECENT_EVENTS: usize = 64;
pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 10_000;

/// One event a committed change produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    pub version: u64,
    pub event_id: Uuid,
}

/// The stored task: the source of truth. A deleted task stays as a tombstone (with a TTL) so the
/// relay can still prove its `task-deleted` event committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task: TaskSnapshot,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub recent_events: Vec<EventRef>,
    /// The open-task slot (`user:{u}:open:{n}`) this task holds while it is open; `None` once
    /// closed, and for tasks written before slots existed (`crate::repository::limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
}

impl TaskRecord {
    /// An open task at version 1 with placeholder text, for unit tests of the index.
    #[cfg(test)]
    pub(crate) fn open_for_test(task_id: Uuid, user_id: Uuid, priority: Priority) -> Self {
        let now = Utc::now();
        Self {
            task: TaskSnapshot {
                task_id,
                user_id,
                user_email: "a@example.com".into(),
                title: "t".into(),
                description: String::new(),
                priority,
                due_date: None,
                status: TaskStatus::Open,
                version: 1,
                created_at: now,
                updated_at: now,
            },
            deleted: false,
            recent_events: Vec::new(),
            slot: None,
        }
    }

    /// Whether the change that produced `event` is part of this record's history.
    pub fn has_committed(&self, event: EventRef) -> bool {
        self.recent_events.contains(&event)
    }

    /// Records the event of the change just applied (the caller bumped `version`).
    pub fn push_event(&mut self, event_id: Uuid) -> EventRef {
        let event = EventRef {
            version: self.task.version,
            event_id,
        };
        self.recent_events.push(event);
        let excess = self.recent_events.len().saturating_sub(RECENT_EVENTS);
        self.recent_events.drain(..excess);
        event
    }

    /// The oldest version still provable from `recent_events`.
    pub fn oldest_recorded_version(&self) -> Option<u64> {
        self.recent_events.first().map(|e| e.version)
    }
}

/// Schema of `events::Priority` for the OpenAPI document.
#[derive(Debug, ToSchema)]
#[schema(as = Priority)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PriorityDoc {
    Low,
    Medium,
    High,
    Urgent,
}

/// Schema of `events::TaskStatus` for the OpenAPI document.
#[derive(Debug, ToSchema)]
#[schema(as = TaskStatus)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum StatusDoc {
    Open,
    InProgress,
    Completed,
}

/// Schema of the statuses a `PATCH` may set (completing has its own operation).
#[derive(Debug, ToSchema)]
#[schema(as = UpdatableStatus)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum UpdatableStatusDoc {
    Open,
    InProgress,
}

/// `POST /api/tasks` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// 1–200 characters after trimming (so at least one that is not white space).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub title: String,
    /// At most 10,000 characters.
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    /// Default `medium`.
    #[serde(default)]
    #[schema(value_type = Option<PriorityDoc>)]
    pub priority: Option<Priority>,
    /// RFC 3339 with an offset, e.g. `2030-01-01T09:00:00+01:00`.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime, example = "2030-01-01T09:00:00Z")]
    pub due_date: Option<String>,
}

/// `PATCH /api/tasks/{id}` body: only the fields present change (at least one must be);
/// `due_date: null` clears it. (The document requires at least one property; see
/// `openapi::PatchNeedsAField`.)
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTask {
    /// 1–200 characters after trimming.
    #[serde(default)]
    #[schema(nullable = false, min_length = 1, max_length = 200, pattern = r"\S")]
    pub title: Option<String>,
    /// At most 10,000 characters.
    #[serde(default)]
    #[schema(nullable = false, max_length = 10000)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = PriorityDoc)]
    pub priority: Option<Priority>,
    /// RFC 3339 with an offset, or `null` to clear the due date.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_date: Option<Option<String>>,
    /// `open` or `in_progress`; completing goes through `POST /api/tasks/{id}/complete`.
    #[serde(default)]
    #[schema(value_type = UpdatableStatusDoc)]
    pub status: Option<TaskStatus>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A task as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    #[schema(value_type = PriorityDoc)]
    pub priority: Priority,
    #[schema(value_type = StatusDoc)]
    pub status: TaskStatus,
    pub due_date: Option<DateTime<Utc>>,
    /// Bumped by every change; the `ETag` is this number, quoted.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&TaskSnapshot> for TaskView {
    fn from(t: &TaskSnapshot) -> Self {
        Self {
            id: t.task_id,
            title: t.title.clone(),
            description: t.description.clone(),
            priority: t.priority,
            status: t.status,
            due_date: t.due_date,
            version: t.version,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// Validated fields of a new task.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub title: String,
    pub description: String,
    pub priority: Priority,
    pub due_date: Option<DateTime<Utc>>,
}

fn check_title(raw: &str, errors: &mut Vec<FieldError>) -> String {
    let title = raw.trim();
    let chars = title.chars().count();
    if chars == 0 {
        errors.push(FieldError::new("title", "must not be empty"));
    } else if chars > TITLE_MAX_CHARS {
        errors.push(FieldError::new(
            "title",
            format!("must be at most {TITLE_MAX_CHARS} characters (got {chars})"),
        ));
    }
    title.to_owned()
}

fn check_description(raw: &str, errors: &mut Vec<FieldError>) {
    let chars = raw.chars().count();
    if chars > DESCRIPTION_MAX_CHARS {
        errors.push(FieldError::new(
            "description",
            format!("must be at most {DESCRIPTION_MAX_CHARS} characters (got {chars})"),
        ));
    }
}

fn check_due_date(raw: &str, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(raw.trim()) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError::new(
                "due_date",
                "must be an RFC 3339 date-time with an offset, e.g. 2030-01-01T09:00:00Z",
            ));
            None
        }
    }
}

impl CreateTask {
    /// Validates every field, reporting all errors at once.
    pub fn validate(self) -> Result<NewTask, ApiError> {
        let mut errors = Vec::new();
        let title = check_title(&self.title, &mut errors);
        let description = self.description.unwrap_or_default();
        check_description(&description, &mut errors);
        let due_date = self
            .due_date
            .as_deref()
            .and_then(|raw| check_due_date(raw, &mut errors));
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(NewTask {
            title,
            description,
            priority: self.priority.unwrap_or(Priority::Medium),
            due_date,
        })
    }
}

/// A validated partial update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub due_date: Option<Option<DateTime<Utc>>>,
    pub status: Option<TaskStatus>,
}

impl UpdateTask {
    pub fn validate(self) -> Result<Changes, ApiError> {
        let mut errors = Vec::new();
        let title = self.title.map(|t| check_title(&t, &mut errors));
        if let Some(description) = &self.description {
            check_description(description, &mut errors);
        }
        let due_date = self
            .due_date
            .map(|d| d.and_then(|raw| check_due_date(&raw, &mut errors)));
        if self.status == Some(TaskStatus::Completed) {
            errors.push(FieldError::new(
                "status",
                "use POST /api/tasks/{id}/complete to complete a task",
            ));
        }
        let changes = Changes {
            title,
            description: self.description,
            priority: self.priority,
            due_date,
            status: self.status,
        };
        if errors.is_empty() && changes == Changes::default() {
            errors.push(FieldError::new("body", "no field to update"));
        }
        if errors.is_empty() {
            Ok(changes)
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

impl Changes {
    /// Applies the changes to `task`, returning the names of the fields that really changed.
    pub fn apply(&self, task: &mut TaskSnapshot) -> Vec<String> {
        let mut changed = Vec::new();
        if let Some(title) = self.title.as_ref().filter(|t| **t != task.title) {
            task.title.clone_from(title);
            changed.push("title".to_owned());
        }
        if let Some(description) = self
            .description
            .as_ref()
            .filter(|d| **d != task.description)
        {
            task.description.clone_from(description);
            changed.push("description".to_owned());
        }
        if let Some(priority) = self.priority.filter(|p| *p != task.priority) {
            task.priority = priority;
            changed.push("priority".to_owned());
        }
        if let Some(due_date) = self.due_date.filter(|d| *d != task.due_date) {
            task.due_date = due_date;
            changed.push("due_date".to_owned());
        }
        if let Some(status) = self.status.filter(|s| *s != task.status) {
            task.status = status;
            changed.push("status".to_owned());
        }
        changed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn create(title: &str) -> CreateTask {
        CreateTask {
            title: title.into(),
            description: None,
            priority: None,
            due_date: None,
        }
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(create("  hi  ").validate().unwrap().title, "hi");
        assert!(create("   ").validate().is_err());
        assert!(create(&"x".repeat(200)).validate().is_ok());
        let err = create(&"é".repeat(201)).validate().unwrap_err();
        assert!(matches!(err, ApiError::Validation(ref e) if e[0].field == "title"));
    }

    #[test]
    fn due_dates_need_an_offset() {
        let mut c = create("x");
        c.due_date = Some("2030-01-01T09:00:00+01:00".into());
        let due = c.validate().unwrap().due_date.unwrap();
        assert_eq!(due.to_rfc3339(), "2030-01-01T08:00:00+00:00");
        let mut c = create("x");
        c.due_date = Some("2030-01-01T09:00:00".into());
        let err = c.validate().unwrap_err();
        assert!(matches!(err, ApiError::Validation(ref e) if e[0].field == "due_date"));
    }

    #[test]
    fn every_error_is_reported() {
        let c = CreateTask {
            title: String::new(),
            description: Some("d".repeat(10_001)),
            priority: None,
            due_date: Some("tomorrow".into()),
        };
        let ApiError::Validation(errors) = c.validate().unwrap_err() else {
            panic!("expected validation errors");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["title", "description", "due_date"]);
    }

    #[test]
    fn patch_distinguishes_null_from_absent() {
        let u: UpdateTask = serde_json::from_str(r#"{"due_date":null}"#).unwrap();
        assert_eq!(u.validate().unwrap().due_date, Some(None));
        let u: UpdateTask = serde_json::from_str(r#"{}"#).unwrap();
        assert!(u.validate().is_err());
        let u: UpdateTask = serde_json::from_str(r#"{"status":"completed"}"#).unwrap();
        assert!(u.validate().is_err());
    }

    #[test]
    fn recent_events_are_bounded() {
        let now = Utc::now();
        let mut record = TaskRecord {
            task: TaskSnapshot {
                task_id: Uuid::now_v7(),
                user_id: Uuid::new_v4(),
                user_email: "a@example.com".into(),
                title: "t".into(),
                description: String::new(),
                priority: Priority::Low,
                due_date: None,
                status: TaskStatus::Open,
                version: 0,
                created_at: now,
                updated_at: now,
            },
            deleted: false,
            recent_events: Vec::new(),
            slot: None,
        };
        let mut first = None;
        for _ in 0..(RECENT_EVENTS + 5) {
            record.task.version += 1;
            let e = record.push_event(Uuid::now_v7());
            first.get_or_insert(e);
            assert!(record.has_committed(e));
        }
        assert_eq!(record.recent_events.len(), RECENT_EVENTS);
        assert!(!record.has_committed(first.unwrap()));
        assert_eq!(record.oldest_recorded_version(), Some(6));
    }
}
