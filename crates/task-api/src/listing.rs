//! `GET /api/tasks`: the caller's tasks, filtered and paginated.
//!
//! One bulk read of the heads of the user's index buckets, then the sealed segments the page
//! reaches ([`PageMerge`]), give the ordered, filterable summaries; one bulk read fetches the
//! page's records. The cost of a page is the 16 heads plus a few segments, whatever the user's
//! size; a filter on priority or due date may read on until the page is full. The order is
//! newest first by task id (UUID v7), which never changes for a task, so a cursor (the last id
//! of a page, opaque to clients) continues exactly after it: no duplicates and no misses across
//! pages, even while tasks are added. Each record is checked again against the owner and the
//! filters, because the index is only a projection.
//!
//! # Read-your-writes, and the lag of other replicas
//!
//! The index is projected off the request path (`crate::repository::projection`): a change is
//! in it one cleaner pass after it commits (`INDEX_PROJECTION_INTERVAL`, 250 ms by default,
//! plus the pass's own few milliseconds). The replica that made a change shows it at once: its
//! list lays its unprojected changes over the index. A list served by another replica shows it
//! once projected; that lag bound is what `tests/it/limits.rs` checks. Reading the live
//! writers' unprojected entries instead would add the registry and range reads to every list of
//! a user with unprojected changes, and a marker key to every change's transaction.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use events::{Priority, TaskStatus};
use serde::Serialize;
use service_kit::FieldError;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::model::TaskView;
use crate::page_merge::PageMerge;
use crate::repository::{TaskRepository, TaskSummary};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;

/// Parsed query parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub status: Option<TaskStatus>,
    pub priority: Option<Priority>,
    pub due_before: Option<DateTime<Utc>>,
    pub after: Option<Uuid>,
    pub limit: usize,
}

/// A page of tasks.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

const CURSOR_PREFIX: &str = "v1:";

pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{id}"))
}

fn decode_cursor(cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    Uuid::parse_str(text.strip_prefix(CURSOR_PREFIX)?).ok()
}

fn parse_enum<T: serde::de::DeserializeOwned>(value: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
}

impl ListQuery {
    /// Parses the raw query pairs, naming each invalid parameter.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let mut query = ListQuery {
            limit: DEFAULT_LIMIT,
            ..ListQuery::default()
        };
        for (name, value) in params {
            match name.as_str() {
                "status" => match parse_enum(value) {
                    Some(status) => query.status = Some(status),
                    None => errors.push(FieldError::new(
                        "status",
                        "must be one of open, in_progress, completed",
                    )),
                },
                "priority" => match parse_enum(value) {
                    Some(priority) => query.priority = Some(priority),
                    None => errors.push(FieldError::new(
                        "priority",
                        "must be one of low, medium, high, urgent",
                    )),
                },
                "due_before" => match DateTime::parse_from_rfc3339(value) {
                    Ok(t) => query.due_before = Some(t.with_timezone(&Utc)),
                    Err(_) => errors.push(FieldError::new(
                        "due_before",
                        "must be an RFC 3339 date-time with an offset",
                    )),
                },
                "cursor" => match decode_cursor(value) {
                    Some(id) => query.after = Some(id),
                    None => {
                        errors.push(FieldError::new("cursor", "is not a cursor this API issued"))
                    }
                },
                "limit" => match value.parse::<usize>() {
                    Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => query.limit = limit,
                    _ => errors.push(FieldError::new(
                        "limit",
                        format!("must be an integer from 1 to {MAX_LIMIT}"),
                    )),
                },
                other => errors.push(FieldError::new(other, "unknown query parameter")),
            }
        }
        if errors.is_empty() {
            Ok(query)
        } else {
            errors.sort_by(|a, b| a.field.cmp(&b.field));
            Err(ApiError::Validation(errors))
        }
    }

    fn matches_summary(&self, s: &TaskSummary) -> bool {
        self.status.is_none_or(|status| s.status == status)
            && self.priority.is_none_or(|priority| s.priority == priority)
            && self
                .due_before
                .is_none_or(|before| s.due_date.is_some_and(|due| due < before))
    }
}

/// One page of `user`'s tasks.
/// `unprojected`: the changes of the user's tasks not in the index yet that this process knows
/// of, shown over it (see [`PageMerge::overlay`]).
pub async fn list(
    repository: &TaskRepository,
    unprojected: HashMap<Uuid, Option<TaskSummary>>,
    user: &AuthUser,
    query: &ListQuery,
) -> Result<TaskPage, ApiError> {
    let heads = repository.heads(user.user_id).await?;
    let merge = PageMerge::new(heads, query.after, query.status).overlay(unprojected);
    let (page, has_more, loaded) = merge
        .page(
            query.limit,
            |s| query.matches_summary(s),
            |wanted| async move { repository.segments(user.user_id, &wanted).await },
        )
        .await?;
    metrics::histogram!("task_api_list_summaries_read").record(loaded as f64);
    let ids: Vec<Uuid> = page.iter().map(|s| s.id).collect();
    let items = repository
        .records(&ids)
        .await?
        .into_iter()
        .filter(|r| !r.deleted && r.task.user_id == user.user_id)
        .filter(|r| query.matches_summary(&TaskSummary::from(r)))
        .map(|r| TaskView::from(&r.task))
        .collect();
    let next_cursor = if has_more {
        page.last().map(|s| encode_cursor(s.id))
    } else {
        None
    };
    Ok(TaskPage { items, next_cursor })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_filters_and_defaults() {
        let q = ListQuery::parse(&params(&[])).unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        let id = Uuid::now_v7();
        let q = ListQuery::parse(&params(&[
            ("status", "in_progress"),
            ("priority", "high"),
            ("due_before", "2030-01-01T00:00:00+02:00"),
            ("cursor", &encode_cursor(id)),
            ("limit", "200"),
        ]))
        .unwrap();
        assert_eq!(q.status, Some(TaskStatus::InProgress));
        assert_eq!(q.priority, Some(Priority::High));
        assert_eq!(q.after, Some(id));
        assert_eq!(q.limit, 200);
        assert_eq!(
            q.due_before.unwrap().to_rfc3339(),
            "2029-12-31T22:00:00+00:00"
        );
    }

    #[test]
    fn names_each_bad_parameter() {
        let ApiError::Validation(errors) = ListQuery::parse(&params(&[
            ("limit", "201"),
            ("status", "done"),
            ("cursor", "nope"),
        ]))
        .unwrap_err() else {
            panic!("expected validation errors");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["cursor", "limit", "status"]);
    }

    #[test]
    fn due_before_excludes_tasks_without_a_due_date() {
        let q = ListQuery {
            due_before: Some(Utc::now()),
            ..ListQuery::default()
        };
        let mut s = TaskSummary {
            id: Uuid::now_v7(),
            status: TaskStatus::Open,
            priority: Priority::Low,
            due_date: None,
        };
        assert!(!q.matches_summary(&s));
        s.due_date = Some(Utc::now() - chrono::Duration::hours(1));
        assert!(q.matches_summary(&s));
    }
}
