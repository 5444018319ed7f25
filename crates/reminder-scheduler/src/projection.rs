//! This service's projection of a task (`task:{id}`) and how a task event changes it.
//!
//! Events are applied by `version`: an event older than or equal to the stored version is
//! ignored, a newer one replaces the record whatever its type. Completion and deletion leave a
//! tombstone (the record, closed, with its version) so an older update arriving late cannot
//! resurrect the task.

use chrono::{DateTime, Utc};
use events::{Envelope, TaskSnapshot, TaskStatus};
use uuid::Uuid;

use crate::policy::Policy;
pub use crate::record::{TaskRecord, task_key};

/// The four task events, reduced to what the projection needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Completed,
    Deleted,
}

/// One task event.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    pub kind: EventKind,
    pub event_id: Uuid,
    pub correlation_id: String,
    /// The trace the event is handled in (see [`TaskRecord::traceparent`]).
    pub traceparent: Option<String>,
    pub task: TaskSnapshot,
}

impl TaskEvent {
    pub fn from_envelope<T>(kind: EventKind, envelope: &Envelope<T>, task: &TaskSnapshot) -> Self {
        Self {
            kind,
            event_id: envelope.event_id,
            correlation_id: envelope.correlation_id.clone(),
            traceparent: None,
            task: task.clone(),
        }
    }

    /// Records the trace the event is handled in: the current span's when traces are exported,
    /// else the delivery's `traceparent`.
    pub fn traced(mut self, delivery: Option<&str>) -> Self {
        self.traceparent = dapr_http::spans::traceparent_of(&tracing::Span::current())
            .or_else(|| delivery.map(str::to_owned));
        self
    }
}

/// Why an event changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Older than what is stored.
    Stale { stored: u64 },
    /// The version already applied (a redelivery).
    Duplicate,
}

/// The writes an event leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub record: TaskRecord,
    /// File the task in this bucket (before the record is written).
    pub file_in: Option<i64>,
    /// Take it out of this bucket (after the record is written).
    pub unfile_from: Option<i64>,
    /// The record was a tombstone (written with a TTL) and is open again: clear the TTL.
    pub revived: bool,
}

/// Applies `event` to the stored `current` record, at `now`.
pub fn decide(
    current: Option<&TaskRecord>,
    event: &TaskEvent,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Result<Plan, Ignored> {
    let task = &event.task;
    if let Some(current) = current {
        if task.version < current.version {
            return Err(Ignored::Stale {
                stored: current.version,
            });
        }
        if task.version == current.version {
            return Err(Ignored::Duplicate);
        }
    }
    let open = !matches!(event.kind, EventKind::Completed | EventKind::Deleted)
        && task.status != TaskStatus::Completed;
    let due_date = task.due_date.filter(|_| open);
    let same_schedule = current.is_some_and(|c| c.open && c.due_date == due_date);
    let (scheduled_by, correlation_id, traceparent) = match current {
        Some(c) if same_schedule => (
            c.scheduled_by,
            c.correlation_id.clone(),
            c.traceparent.clone(),
        ),
        _ => (
            event.event_id,
            event.correlation_id.clone(),
            event.traceparent.clone(),
        ),
    };
    let reminded_for = current.and_then(|c| c.reminded_for);
    let filed_in = match (due_date, current) {
        (None, _) => None,
        (Some(_), Some(c)) if same_schedule && c.filed_in.is_some() => c.filed_in,
        (Some(due), _) if reminded_for == Some(due) => None,
        (Some(due), _) => policy.filing_bucket(due, now),
    };
    let unfile_from = current
        .and_then(|c| c.filed_in)
        .filter(|b| Some(*b) != filed_in);
    // A new schedule is filed even in the bucket it already sits in: the scanner may have
    // dropped the entry there after reminding the old due date.
    let already_filed = same_schedule && current.is_some_and(|c| c.filed_in.is_some());
    let file_in = filed_in.filter(|_| !already_filed);
    Ok(Plan {
        record: TaskRecord {
            task_id: task.task_id,
            version: task.version,
            open,
            due_date,
            user_id: task.user_id,
            user_email: task.user_email.clone(),
            title: task.title.clone(),
            filed_in,
            reminded_for,
            scheduled_by,
            correlation_id,
            traceparent,
        },
        file_in,
        unfile_from,
        revived: open && current.is_some_and(|c| !c.open),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::buckets::Buckets;
    use crate::record::tests::{now, record};
    use chrono::Duration;
    use events::Priority;

    fn policy() -> Policy {
        Policy {
            lead: Duration::hours(1),
            remind_overdue: false,
            buckets: Buckets::new(std::time::Duration::from_secs(60)),
        }
    }

    fn event(kind: EventKind, version: u64, due: Option<DateTime<Utc>>) -> TaskEvent {
        TaskEvent {
            kind,
            event_id: Uuid::from_u128(100 + u128::from(version)),
            correlation_id: format!("corr-{version}"),
            traceparent: Some(format!(
                "00-4bf92f3577b34da6a3ce929d0e0e47{version:02x}-00f067aa0ba902b7-01"
            )),
            task: TaskSnapshot {
                task_id: Uuid::from_u128(1),
                user_id: Uuid::from_u128(2),
                user_email: "a@example.com".into(),
                title: "write report".into(),
                description: String::new(),
                priority: Priority::Medium,
                due_date: due,
                status: TaskStatus::Open,
                version,
                created_at: now(),
                updated_at: now(),
            },
        }
    }

    #[test]
    fn a_new_task_is_filed_by_due_date() {
        let due = now() + Duration::hours(3);
        let plan = decide(
            None,
            &event(EventKind::Created, 1, Some(due)),
            now(),
            &policy(),
        )
        .unwrap();
        let bucket = policy().buckets.start_of(due);
        assert_eq!(plan.file_in, Some(bucket));
        assert_eq!(plan.record.filed_in, Some(bucket));
        assert_eq!(plan.unfile_from, None);
        assert_eq!(plan.record.scheduled_by, Uuid::from_u128(101));
        assert_eq!(plan.record.correlation_id, "corr-1");
    }

    #[test]
    fn stale_and_repeated_events_are_ignored() {
        let current = record(3, Some(now()));
        let e = event(EventKind::Updated, 2, None);
        assert_eq!(
            decide(Some(&current), &e, now(), &policy()),
            Err(Ignored::Stale { stored: 3 })
        );
        let e = event(EventKind::Updated, 3, None);
        assert_eq!(
            decide(Some(&current), &e, now(), &policy()),
            Err(Ignored::Duplicate)
        );
    }

    #[test]
    fn a_moved_due_date_refiles_and_keeps_nothing_of_the_old_schedule() {
        let old_due = now() + Duration::hours(3);
        let mut current = record(1, Some(old_due));
        current.filed_in = policy().filing_bucket(old_due, now());
        let new_due = now() + Duration::hours(5);
        let plan = decide(
            Some(&current),
            &event(EventKind::Updated, 2, Some(new_due)),
            now(),
            &policy(),
        )
        .unwrap();
        assert_eq!(plan.file_in, Some(policy().buckets.start_of(new_due)));
        assert_eq!(plan.unfile_from, current.filed_in);
        assert_eq!(
            plan.record.scheduled_by,
            Uuid::from_u128(102),
            "new causation"
        );
        // The reminder of the new due date belongs to the trace of the event that set it.
        assert_eq!(
            plan.record.traceparent,
            event(EventKind::Updated, 2, Some(new_due)).traceparent
        );
    }

    #[test]
    fn an_unrelated_change_keeps_the_filing_and_the_causation() {
        let due = now() + Duration::hours(3);
        let mut current = record(1, Some(due));
        current.filed_in = policy().filing_bucket(due, now());
        let mut e = event(EventKind::Updated, 2, Some(due));
        e.task.title = "new title".into();
        let plan = decide(Some(&current), &e, now(), &policy()).unwrap();
        assert_eq!((plan.file_in, plan.unfile_from), (None, None));
        assert_eq!(plan.record.filed_in, current.filed_in);
        assert_eq!(plan.record.scheduled_by, current.scheduled_by);
        assert_eq!(plan.record.traceparent, current.traceparent, "same trace");
        assert_eq!(plan.record.title, "new title");
    }

    #[test]
    fn completion_and_deletion_leave_a_closed_tombstone() {
        let due = now() + Duration::hours(3);
        let mut current = record(1, Some(due));
        current.filed_in = policy().filing_bucket(due, now());
        for kind in [EventKind::Completed, EventKind::Deleted] {
            let plan =
                decide(Some(&current), &event(kind, 2, Some(due)), now(), &policy()).unwrap();
            assert!(!plan.record.open);
            assert_eq!(plan.record.due_date, None);
            assert_eq!(plan.record.filed_in, None);
            assert_eq!(plan.unfile_from, current.filed_in);
            // The tombstone outranks the older update that arrives late.
            let late = event(EventKind::Updated, 1, Some(due));
            assert!(decide(Some(&plan.record), &late, now(), &policy()).is_err());
        }
        let mut e = event(EventKind::Updated, 2, Some(due));
        e.task.status = TaskStatus::Completed;
        assert!(
            !decide(Some(&current), &e, now(), &policy())
                .unwrap()
                .record
                .open
        );
    }

    #[test]
    fn a_reopened_task_is_revived() {
        let mut tomb = record(2, None);
        tomb.open = false;
        let due = now() + Duration::hours(3);
        let plan = decide(
            Some(&tomb),
            &event(EventKind::Updated, 3, Some(due)),
            now(),
            &policy(),
        )
        .unwrap();
        assert!(plan.revived && plan.record.open);
        assert!(plan.file_in.is_some());
    }

    #[test]
    fn a_new_due_date_in_the_same_bucket_is_filed_again() {
        // Both due dates are inside the window, so both are filed at the window's edge.
        let first = now() + Duration::minutes(30);
        let mut current = record(1, Some(first));
        current.filed_in = policy().filing_bucket(first, now());
        current.reminded_for = Some(first);
        let second = now() + Duration::minutes(40);
        let plan = decide(
            Some(&current),
            &event(EventKind::Updated, 2, Some(second)),
            now(),
            &policy(),
        )
        .unwrap();
        assert_eq!(plan.file_in, current.filed_in);
        assert_eq!(plan.unfile_from, None);
    }

    #[test]
    fn an_already_reminded_due_date_is_not_filed_again() {
        let due = now() + Duration::hours(3);
        let mut current = record(1, Some(due));
        current.reminded_for = Some(due);
        current.open = false;
        let plan = decide(
            Some(&current),
            &event(EventKind::Updated, 2, Some(due)),
            now(),
            &policy(),
        )
        .unwrap();
        assert_eq!(plan.file_in, None);
    }

    #[test]
    fn overdue_tasks_are_not_filed() {
        let due = now() - Duration::minutes(5);
        let plan = decide(
            None,
            &event(EventKind::Created, 1, Some(due)),
            now(),
            &policy(),
        )
        .unwrap();
        assert_eq!(plan.file_in, None);
        assert!(plan.record.open);
    }

    #[test]
    fn record_json_round_trips_with_string_timestamps() {
        let r = record(1, Some(now()));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["due_date"], "2027-01-15T08:00:00.000000Z");
        assert_eq!(serde_json::from_value::<TaskRecord>(json).unwrap(), r);
    }
}
