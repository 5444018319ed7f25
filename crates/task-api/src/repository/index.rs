//! The per-user index: compact summaries of a user's tasks, so that a list is one bulk read of
//! the user's `INDEX_BUCKETS` (16) buckets plus one bulk read of the page. A task's summary
//! lives in bucket `fnv(task id) % INDEX_BUCKETS`, so a change rewrites a sixteenth of the
//! user's index, and two changes of one user's tasks rarely meet on the same key.
//!
//! The index is a projection, written in the same transaction as the task. That transaction is
//! not atomic (see the [repository](super)), so an index entry may be ahead of or behind its
//! task: readers verify every page against the task records, and every later change of the task
//! rewrites its summary from the record.

use chrono::{DateTime, Utc};
use events::{Priority, TaskStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::TaskRecord;

/// What listing and filtering need of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub id: Uuid,
    pub status: TaskStatus,
    pub priority: Priority,
    #[serde(default)]
    pub due_date: Option<DateTime<Utc>>,
}

impl From<&TaskRecord> for TaskSummary {
    fn from(record: &TaskRecord) -> Self {
        Self {
            id: record.task.task_id,
            status: record.task.status,
            priority: record.task.priority,
            due_date: record.task.due_date,
        }
    }
}

/// One bucket of a user's index, newest first (ids are UUID v7, so id order is creation order
/// and ties are impossible: the order is stable across pages).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIndex {
    #[serde(default)]
    pub tasks: Vec<TaskSummary>,
}

impl UserIndex {
    /// Makes the index agree with `record`; returns whether anything changed.
    pub fn reconcile(&mut self, record: &TaskRecord) -> bool {
        let id = record.task.task_id;
        let position = self.tasks.binary_search_by(|s| id.cmp(&s.id));
        match (record.deleted, position) {
            (true, Ok(i)) => {
                self.tasks.remove(i);
                true
            }
            (true, Err(_)) => false,
            (false, Ok(i)) => {
                let summary = TaskSummary::from(record);
                if self.tasks[i] == summary {
                    false
                } else {
                    self.tasks[i] = summary;
                    true
                }
            }
            (false, Err(i)) => {
                self.tasks.insert(i, TaskSummary::from(record));
                true
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use events::TaskSnapshot;

    fn record(id: Uuid) -> TaskRecord {
        let now = Utc::now();
        TaskRecord {
            task: TaskSnapshot {
                task_id: id,
                user_id: Uuid::new_v4(),
                user_email: "a@example.com".into(),
                title: "t".into(),
                description: String::new(),
                priority: Priority::Low,
                due_date: None,
                status: TaskStatus::Open,
                version: 1,
                created_at: now,
                updated_at: now,
            },
            deleted: false,
            recent_events: Vec::new(),
        }
    }

    #[test]
    fn index_keeps_newest_first_and_reconciles() {
        let mut index = UserIndex::default();
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        for id in [ids[2], ids[0], ids[4], ids[1], ids[3]] {
            assert!(index.reconcile(&record(id)));
        }
        let order: Vec<Uuid> = index.tasks.iter().map(|s| s.id).collect();
        let mut expected = ids.clone();
        expected.reverse();
        assert_eq!(order, expected);
        assert!(!index.reconcile(&record(ids[1])), "no change, no write");
        let mut changed = record(ids[1]);
        changed.task.status = TaskStatus::Completed;
        assert!(index.reconcile(&changed));
        changed.deleted = true;
        assert!(index.reconcile(&changed));
        assert_eq!(index.tasks.len(), 4);
    }
}
