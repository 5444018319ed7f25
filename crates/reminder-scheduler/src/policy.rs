//! When a reminder is due, and the reminder event itself (deterministic id, causation,
//! correlation). Pure functions: the I/O around them lives in `apply` and `scanner`.
//!
//! Every rule compares the due date with the clock, never with the age of the event that set
//! it. That is what makes a first deployment safe: a new consumer group replays the retained
//! topics (Kafka with `initialOffset: oldest`, Dapr docs "Apache Kafka" pub/sub component; a
//! Redis Streams group created at the start of the stream, components-contrib
//! `pubsub/redis/redis.go` `Subscribe`), and a replayed task long past its due date is not filed unless `REMIND_OVERDUE` asks
//! for overdue tasks, while one due in the future is reminded as usual.

use chrono::{DateTime, Utc};
use events::{Envelope, TaskDueSoon};
use uuid::Uuid;

use crate::buckets::Buckets;
use crate::record::TaskRecord;

/// The namespace of reminder event ids. Fixed forever: changing it would give every pending
/// reminder a new id and defeat downstream deduplication across a deploy.
pub const REMINDER_NAMESPACE: Uuid = Uuid::from_u128(0x87dd_dcfb_b402_436b_87a5_5377_2398_83c3);

/// The scheduling rules a replica applies.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How long before the due date the reminder goes out.
    pub lead: chrono::Duration,
    /// Whether a task that is already overdue still gets a reminder.
    pub remind_overdue: bool,
    pub buckets: Buckets,
}

impl Policy {
    /// The bucket a task due at `due` is filed in when the decision is made at `now`, or `None`
    /// when it will never get a reminder (overdue and `remind_overdue` is off).
    ///
    /// A task already inside the reminder window is filed at the window's far edge, the last
    /// bucket the next scan reads, so it is reminded at once instead of being filed behind the
    /// scanner.
    pub fn filing_bucket(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Option<i64> {
        if due < now && !self.remind_overdue {
            return None;
        }
        Some(self.buckets.start_of(due.max(now + self.lead)))
    }

    /// The far edge of the reminder window at `now`.
    pub fn horizon(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.lead
    }
}

/// What the scanner does with one bucket entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Publish the reminder, then mark it sent, then drop the entry.
    Remind,
    /// Not inside the window yet: keep the entry.
    NotYet,
    /// The entry is obsolete (moved, closed, reminded, overdue): drop it.
    Drop,
    /// The projection has not caught up with the event that filed the entry (it is being
    /// written right now, or that write failed and the event will be redelivered): keep it.
    Pending,
}

/// Judges the entry `(task, filed_version)` of bucket `bucket` against the task's projection.
pub fn evaluate(
    record: Option<&TaskRecord>,
    filed_version: u64,
    bucket: i64,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Verdict {
    let Some(record) = record else {
        return Verdict::Pending;
    };
    if record.version < filed_version {
        return Verdict::Pending;
    }
    let Some(due) = record.due_date.filter(|_| record.open) else {
        return Verdict::Drop;
    };
    if record.filed_in != Some(bucket) || record.reminded_for == Some(due) {
        return Verdict::Drop;
    }
    if due > policy.horizon(now) {
        return Verdict::NotYet;
    }
    if due < now && !policy.remind_overdue {
        return Verdict::Drop;
    }
    Verdict::Remind
}

/// The id of the one reminder of `task` for `due`: UUID v5 of [`REMINDER_NAMESPACE`] and
/// `{task}/{due as RFC 3339 with microseconds}`.
pub fn reminder_event_id(task: Uuid, due: DateTime<Utc>) -> Uuid {
    let name = format!(
        "{task}/{}",
        due.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    Uuid::new_v5(&REMINDER_NAMESPACE, name.as_bytes())
}

/// The reminder for `record`'s current due date, caused by the event that scheduled it.
pub fn reminder(
    record: &TaskRecord,
    source: &str,
    now: DateTime<Utc>,
) -> Option<Envelope<TaskDueSoon>> {
    let due = record.due_date?;
    let data = TaskDueSoon {
        task_id: record.task_id,
        user_id: record.user_id,
        user_email: record.user_email.clone(),
        title: record.title.clone(),
        due_date: due,
        task_version: record.version,
    };
    let envelope = Envelope::with_id(
        reminder_event_id(record.task_id, due),
        now,
        source,
        record.correlation_id.clone(),
        data,
    );
    Some(envelope.caused_by(record.scheduled_by))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::tests::record;
    use chrono::Duration;

    fn policy(remind_overdue: bool) -> Policy {
        Policy {
            lead: Duration::hours(1),
            remind_overdue,
            buckets: Buckets::new(std::time::Duration::from_secs(60)),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn filing_uses_the_due_date_or_the_window_edge() {
        let p = policy(false);
        let far = now() + Duration::hours(5);
        assert_eq!(p.filing_bucket(far, now()), Some(p.buckets.start_of(far)));
        let inside = now() + Duration::minutes(10);
        assert_eq!(
            p.filing_bucket(inside, now()),
            Some(p.buckets.start_of(now() + Duration::hours(1)))
        );
        let overdue = now() - Duration::minutes(1);
        assert_eq!(p.filing_bucket(overdue, now()), None);
        assert!(policy(true).filing_bucket(overdue, now()).is_some());
    }

    #[test]
    fn verdicts() {
        let p = policy(false);
        let due = now() + Duration::minutes(30);
        let bucket = p.filing_bucket(due, now()).unwrap();
        let mut r = record(3, Some(due));
        r.filed_in = Some(bucket);
        assert_eq!(evaluate(Some(&r), 3, bucket, now(), &p), Verdict::Remind);
        assert_eq!(evaluate(Some(&r), 4, bucket, now(), &p), Verdict::Pending);
        assert_eq!(evaluate(None, 1, bucket, now(), &p), Verdict::Pending);
        assert_eq!(evaluate(Some(&r), 3, bucket - 60, now(), &p), Verdict::Drop);
        let early = now() - Duration::hours(2);
        assert_eq!(evaluate(Some(&r), 3, bucket, early, &p), Verdict::NotYet);
        let late = now() + Duration::hours(1);
        assert_eq!(evaluate(Some(&r), 3, bucket, late, &p), Verdict::Drop);
        assert_eq!(
            evaluate(Some(&r), 3, bucket, late, &policy(true)),
            Verdict::Remind
        );
        r.reminded_for = Some(due);
        assert_eq!(evaluate(Some(&r), 3, bucket, now(), &p), Verdict::Drop);
        r.reminded_for = None;
        r.open = false;
        assert_eq!(evaluate(Some(&r), 3, bucket, now(), &p), Verdict::Drop);
    }

    #[test]
    fn reminder_ids_are_deterministic_per_task_and_due_date() {
        let task = Uuid::from_u128(42);
        let due = now();
        assert_eq!(reminder_event_id(task, due), reminder_event_id(task, due));
        assert_ne!(
            reminder_event_id(task, due),
            reminder_event_id(task, due + Duration::microseconds(1))
        );
        assert_ne!(
            reminder_event_id(task, due),
            reminder_event_id(Uuid::from_u128(43), due)
        );
        assert_eq!(reminder_event_id(task, due).get_version_num(), 5);
    }

    #[test]
    fn the_reminder_carries_causation_and_correlation() {
        let r = record(2, Some(now()));
        let envelope = reminder(&r, "reminder-scheduler", now()).unwrap();
        assert_eq!(envelope.event_id, reminder_event_id(r.task_id, now()));
        assert_eq!(envelope.causation_id, Some(r.scheduled_by));
        assert_eq!(envelope.correlation_id, r.correlation_id);
        assert_eq!(envelope.event_type, "task-due-soon");
        assert_eq!(envelope.data.task_version, 2);
        assert!(reminder(&record(2, None), "x", now()).is_none());
    }
}
