//! The per-user index: compact summaries of a user's tasks, split over `INDEX_BUCKETS` (16)
//! buckets by `fnv(task id) % INDEX_BUCKETS`, so a change rewrites a sixteenth of the user's
//! index and two changes of one user's tasks rarely meet on the same key.
//!
//! # Heads and sealed segments
//!
//! Each bucket is a chain ordered by task id (UUID v7, so creation order): the **head**
//! (`user:{u}:tasks:{b}`, a [`UserIndex`]) holds the newest summaries and a directory of the
//! bucket's **sealed segments** (`user:{u}:tasks:{b}:{segment}`, an [`IndexSegment`]), newest
//! first. When a change leaves more than `head_size` summaries in the head, the oldest
//! `segment_size` of them move to a new segment in the same transaction ([`UserIndex::seal`]).
//! Segment `i` covers the ids in `(sealed[i + 1].newest, sealed[i].newest]` (the last one
//! everything up to its `newest`), the head everything newer than `sealed[0].newest`, so every
//! id has exactly one home ([`UserIndex::home_of`]) and the chain stays in id order. A list
//! reads the 16 heads and then only the segments its page reaches (`crate::listing`), so a page
//! costs the heads plus a few segments whatever the user's size; what grows with the user is
//! only the directory, about 100 bytes per `segment_size` tasks.
//!
//! # Open-task counts
//!
//! Each directory entry carries its segment's count of open tasks (and of entries), rewritten
//! from the segment by every write of the segment, so a list filtered by status skips the
//! segments that cannot match. (The open-task limit no longer comes from these counts: see
//! `crate::repository::limit`.)
//!
//! The index is a projection of the task records, written off the request path by the outbox's
//! cleaner (`crate::repository::projection`), so it may lag behind a task, and a transaction
//! that failed in part may leave a head and its segment disagreeing: readers verify every page
//! against the task records, and every projection rewrites a summary from the record and
//! recounts the segment it touches.

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

impl TaskSummary {
    /// Whether the task takes one of its owner's open-task slots.
    pub fn is_open(&self) -> bool {
        self.status != TaskStatus::Completed
    }
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

/// The head of one bucket of a user's index: its newest summaries, newest first (ids are UUID
/// v7, so id order is creation order and ties are impossible: the order is stable across
/// pages), and the directory of its sealed segments, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIndex {
    #[serde(default)]
    pub tasks: Vec<TaskSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sealed: Vec<SealedRef>,
}

/// A directory entry of a sealed segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRef {
    /// Names the segment's key. Random, so a seal whose head write lost its race leaves an
    /// unreferenced key instead of overwriting the segment another writer sealed.
    pub segment: Uuid,
    /// The newest id the segment covers.
    pub newest: Uuid,
    /// Open tasks in the segment.
    pub open: u32,
    /// Summaries in the segment.
    pub len: u32,
}

/// A sealed segment's summaries, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSegment {
    #[serde(default)]
    pub tasks: Vec<TaskSummary>,
}

/// Makes `tasks` (newest first) agree with `record`; returns whether anything changed.
pub fn reconcile(tasks: &mut Vec<TaskSummary>, record: &TaskRecord) -> bool {
    let id = record.task.task_id;
    let position = tasks.binary_search_by(|s| id.cmp(&s.id));
    match (record.deleted, position) {
        (true, Ok(i)) => {
            tasks.remove(i);
            true
        }
        (true, Err(_)) => false,
        (false, Ok(i)) => {
            let summary = TaskSummary::from(record);
            if tasks[i] == summary {
                false
            } else {
                tasks[i] = summary;
                true
            }
        }
        (false, Err(i)) => {
            tasks.insert(i, TaskSummary::from(record));
            true
        }
    }
}

fn count_open(tasks: &[TaskSummary]) -> u32 {
    u32::try_from(tasks.iter().filter(|s| s.is_open()).count()).unwrap_or(u32::MAX)
}

impl SealedRef {
    /// Rewrites the counts from the segment as it will be written; returns whether they changed.
    pub fn recount(&mut self, segment: &IndexSegment) -> bool {
        let open = count_open(&segment.tasks);
        let len = u32::try_from(segment.tasks.len()).unwrap_or(u32::MAX);
        let changed = (open, len) != (self.open, self.len);
        self.open = open;
        self.len = len;
        changed
    }
}

impl UserIndex {
    /// Makes the head agree with `record` (whose home must be the head); returns whether
    /// anything changed.
    pub fn reconcile(&mut self, record: &TaskRecord) -> bool {
        reconcile(&mut self.tasks, record)
    }

    /// Where the summary of `id` lives: `None` for the head, `Some(i)` for `sealed[i]`.
    pub fn home_of(&self, id: Uuid) -> Option<usize> {
        let first = self.sealed.first()?;
        if id > first.newest {
            return None;
        }
        let mut home = 0;
        while self
            .sealed
            .get(home + 1)
            .is_some_and(|next| id <= next.newest)
        {
            home += 1;
        }
        Some(home)
    }

    /// The directory entry of segment `segment`.
    pub fn sealed_mut(&mut self, segment: Uuid) -> Option<&mut SealedRef> {
        self.sealed.iter_mut().find(|r| r.segment == segment)
    }

    /// Open tasks in the whole bucket: the head's and every sealed segment's.
    pub fn open_tasks(&self) -> u64 {
        self.sealed.iter().map(|r| u64::from(r.open)).sum::<u64>()
            + u64::from(count_open(&self.tasks))
    }

    /// When the head holds more than `head_size` summaries, moves its oldest `segment_size`
    /// into a new segment (returned, to be written with the head) and lists it first in the
    /// directory: every id left in the head is newer than every id moved.
    pub fn seal(&mut self, head_size: usize, segment_size: usize) -> Option<(Uuid, IndexSegment)> {
        if self.tasks.len() <= head_size || segment_size == 0 {
            return None;
        }
        let keep = self.tasks.len().saturating_sub(segment_size);
        let segment = IndexSegment {
            tasks: self.tasks.split_off(keep),
        };
        let newest = segment.tasks.first()?.id;
        let mut entry = SealedRef {
            segment: Uuid::new_v4(),
            newest,
            open: 0,
            len: 0,
        };
        entry.recount(&segment);
        let id = entry.segment;
        self.sealed.insert(0, entry);
        Some((id, segment))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    pub(crate) fn record(id: Uuid) -> TaskRecord {
        TaskRecord::open_for_test(id, Uuid::new_v4(), events::Priority::Low)
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
        assert_eq!(index.open_tasks(), 4);
        changed.deleted = true;
        assert!(index.reconcile(&changed));
        assert_eq!(index.tasks.len(), 4);
    }

    #[test]
    fn sealing_moves_the_oldest_and_every_id_keeps_one_home() {
        let mut index = UserIndex::default();
        let ids: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
        let mut segments = Vec::new();
        for id in &ids {
            let mut r = record(*id);
            if id.as_bytes()[15] % 3 == 0 {
                r.task.status = TaskStatus::Completed;
            }
            index.reconcile(&r);
            if let Some(sealed) = index.seal(6, 4) {
                segments.push(sealed);
            }
        }
        assert!(index.tasks.len() <= 6 && index.tasks.len() > 2, "{index:?}");
        assert_eq!(index.sealed.len(), segments.len());
        assert_eq!(index.sealed.len(), 4);
        // The chain, head then segments newest first, is every id newest first.
        let mut chain: Vec<Uuid> = index.tasks.iter().map(|s| s.id).collect();
        for entry in &index.sealed {
            let (_, segment) = segments
                .iter()
                .find(|(id, _)| *id == entry.segment)
                .unwrap();
            assert_eq!(entry.len as usize, segment.tasks.len());
            assert_eq!(entry.newest, segment.tasks[0].id);
            chain.extend(segment.tasks.iter().map(|s| s.id));
        }
        let mut expected = ids.clone();
        expected.reverse();
        assert_eq!(chain, expected);
        let open = ids.iter().filter(|id| id.as_bytes()[15] % 3 != 0).count();
        assert_eq!(index.open_tasks(), open as u64);
        // Each id's home is the unit that holds it.
        for id in &ids {
            match index.home_of(*id) {
                None => assert!(index.tasks.iter().any(|s| s.id == *id)),
                Some(i) => {
                    let (_, segment) = segments
                        .iter()
                        .find(|(s, _)| *s == index.sealed[i].segment)
                        .unwrap();
                    assert!(segment.tasks.iter().any(|s| s.id == *id), "{id}");
                }
            }
        }
        // An id older than everything falls in the oldest segment.
        assert_eq!(index.home_of(Uuid::nil()), Some(index.sealed.len() - 1));
    }
}
