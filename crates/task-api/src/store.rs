//! State keys and the per-user index.
//!
//! Keys (prefixed by the sidecar with the app id, so no other service sees them):
//! * `task:{id}`: the [`TaskRecord`], the source of truth;
//! * `user:{user_id}:tasks:{b}`: the [`UserIndex`] buckets, compact summaries of a user's tasks
//!   so that a list is one bulk read of the buckets plus one bulk read of the page. A task's
//!   summary lives in bucket `fnv(task id) % INDEX_BUCKETS`, so a change rewrites a sixteenth of
//!   the user's index, and two changes of one user's tasks rarely meet on the same key;
//! * `outbox:{n}`: an outbox shard (see [`crate::outbox`]).
//!
//! The index is a projection, written in the same transaction as the task. On Redis a failed
//! etag check inside a transaction does not roll back the other operations, so an index entry
//! may be ahead of or behind its task: readers verify every page against the task records, and
//! every later change of the task rewrites its summary from the record.

use chrono::{DateTime, Utc};
use events::{Priority, TaskStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::TaskRecord;

pub fn task_key(id: Uuid) -> String {
    format!("task:{id}")
}

/// How many keys a user's index is split over. Part of the stored layout: changing it would
/// leave summaries in buckets nobody reads.
pub const INDEX_BUCKETS: u32 = 16;

/// The index bucket holding the summary of `task_id`.
pub fn index_key(user_id: Uuid, task_id: Uuid) -> String {
    index_bucket_key(user_id, shard_of(task_id, INDEX_BUCKETS))
}

/// Every bucket key of a user's index, for a list.
pub fn index_keys(user_id: Uuid) -> Vec<String> {
    (0..INDEX_BUCKETS)
        .map(|bucket| index_bucket_key(user_id, bucket))
        .collect()
}

fn index_bucket_key(user_id: Uuid, bucket: u32) -> String {
    format!("user:{user_id}:tasks:{bucket}")
}

pub fn outbox_key(shard: u32) -> String {
    format!("outbox:{shard}")
}

/// The outbox shard (or index bucket) of a task: FNV-1a of the id's bytes, stable across builds and replicas
/// (std's hasher is randomly seeded, which would scatter one task over shards).
pub fn shard_of(task_id: Uuid, shards: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in task_id.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % shards.max(1)
}

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

/// A user's tasks, newest first (ids are UUID v7, so id order is creation order and ties are
/// impossible: the order is stable across pages).
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

    #[test]
    fn shards_are_stable_and_in_range() {
        let id = Uuid::parse_str("0190a5b8-7c1e-7d3a-9f00-123456789abc").unwrap();
        assert_eq!(shard_of(id, 16), shard_of(id, 16));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let s = shard_of(Uuid::now_v7(), 16);
            assert!(s < 16);
            seen.insert(s);
        }
        assert!(seen.len() > 8, "ids spread over shards: {seen:?}");
    }
}
