//! Time buckets of due dates: the index that keeps a scan proportional to the reminders due, not
//! to every task tracked.
//!
//! A bucket is one state key, `due:{start}` (`start` = the bucket's first second, Unix time,
//! a multiple of the bucket width), holding the ids of the tasks filed in it with the task
//! version that filed them. Entries are hints: the task's projection is the source of truth, and
//! the scanner checks every candidate against it before publishing anything.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The bucket grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    width_secs: i64,
}

impl Buckets {
    /// A grid of `width` wide buckets (at least one second).
    pub fn new(width: std::time::Duration) -> Self {
        let width_secs = i64::try_from(width.as_secs()).unwrap_or(i64::MAX).max(1);
        Self { width_secs }
    }

    pub fn width_secs(&self) -> i64 {
        self.width_secs
    }

    /// The start (Unix seconds) of the bucket holding `t`.
    pub fn start_of(&self, t: DateTime<Utc>) -> i64 {
        t.timestamp().div_euclid(self.width_secs) * self.width_secs
    }

    /// The start of the bucket after the one starting at `start`.
    pub fn next(&self, start: i64) -> i64 {
        start.saturating_add(self.width_secs)
    }

    /// Bucket starts from `from` to `to`, both included (both are bucket starts).
    pub fn starts(&self, from: i64, to: i64) -> impl Iterator<Item = i64> + use<> {
        let width = self.width_secs;
        let first = from.div_euclid(width) * width;
        (0..)
            .map(move |i: i64| first.saturating_add(i.saturating_mul(width)))
            .take_while(move |s| *s <= to)
    }

    /// The state key of the bucket starting at `start`.
    pub fn key(start: i64) -> String {
        format!("due:{start}")
    }
}

/// The value stored under a bucket key: task id → the task version that filed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    #[serde(default)]
    pub tasks: BTreeMap<Uuid, u64>,
}

impl Bucket {
    /// Files `task` at `version`; a newer filing of the same task wins. Returns whether the bucket
    /// changed.
    pub fn file(&mut self, task: Uuid, version: u64) -> bool {
        match self.tasks.get(&task) {
            Some(existing) if *existing >= version => false,
            _ => {
                self.tasks.insert(task, version);
                true
            }
        }
    }

    /// Removes `task` if it was filed at `version` or earlier (a newer filing is kept: it was
    /// made after the decision to remove). Returns whether the bucket changed.
    pub fn unfile(&mut self, task: Uuid, up_to_version: u64) -> bool {
        match self.tasks.get(&task) {
            Some(filed) if *filed <= up_to_version => {
                self.tasks.remove(&task);
                true
            }
            _ => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn buckets_align_to_the_width() {
        let b = Buckets::new(Duration::from_secs(60));
        assert_eq!(b.start_of(at(119)), 60);
        assert_eq!(b.start_of(at(120)), 120);
        assert_eq!(b.start_of(at(-1)), -60);
        assert_eq!(Buckets::key(120), "due:120");
        assert_eq!(b.starts(60, 240).collect::<Vec<_>>(), [60, 120, 180, 240]);
        assert_eq!(
            b.starts(61, 60).count(),
            1,
            "`from` is rounded down to its bucket"
        );
        assert_eq!(b.starts(300, 240).count(), 0);
    }

    #[test]
    fn filing_keeps_the_newest_version_and_unfiling_spares_newer_ones() {
        let task = Uuid::from_u128(7);
        let mut bucket = Bucket::default();
        assert!(bucket.file(task, 2));
        assert!(
            !bucket.file(task, 1),
            "an older filing does not replace a newer one"
        );
        assert!(
            !bucket.unfile(task, 1),
            "a removal decided at v1 spares a v2 filing"
        );
        assert!(bucket.unfile(task, 2));
        assert!(bucket.is_empty());
    }

    #[test]
    fn bucket_json_is_stable() {
        let mut bucket = Bucket::default();
        bucket.file(Uuid::from_u128(1), 3);
        let json = serde_json::to_value(&bucket).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"tasks": {"00000000-0000-0000-0000-000000000001": 3}})
        );
        let back: Bucket = serde_json::from_value(json).unwrap();
        assert_eq!(back, bucket);
    }
}
