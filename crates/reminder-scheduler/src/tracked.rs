//! The count of tracked tasks (open, with a due date), kept in a few shard keys so that
//! concurrent handlers rarely contend on one key; the lease holder sums them for the gauge.
//!
//! The count is written after the projection, in a separate request: a crash between the two
//! leaves the gauge off by one for that task. It is an operational figure, not a source of truth.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;
use crate::record::TaskRecord;
use crate::store::{Change, Store};

/// Number of shard keys.
pub const SHARDS: u128 = 16;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Shard {
    pub count: i64,
}

fn shard_key(task: Uuid) -> String {
    format!("tracked:{}", task.as_u128() % SHARDS)
}

/// Every shard key.
pub fn shard_keys() -> Vec<String> {
    (0..SHARDS).map(|s| format!("tracked:{s}")).collect()
}

fn is_tracked(record: Option<&TaskRecord>) -> bool {
    record.is_some_and(|r| r.open && r.due_date.is_some())
}

/// +1, -1 or 0 for a record changing from `before` to `after`.
pub fn delta(before: Option<&TaskRecord>, after: &TaskRecord) -> i64 {
    i64::from(is_tracked(Some(after))) - i64::from(is_tracked(before))
}

/// Adds `delta` to the shard of `task`.
pub async fn add(store: &Store, task: Uuid, delta: i64) -> Result<(), Error> {
    if delta == 0 {
        return Ok(());
    }
    store
        .update::<Shard, _>(&shard_key(task), |shard| {
            let mut shard = shard.unwrap_or_default();
            shard.count += delta;
            Change::Save(shard)
        })
        .await?;
    Ok(())
}

/// The sum over all shards.
pub async fn total(store: &Store) -> Result<i64, Error> {
    let items = store
        .dapr
        .get_bulk_state::<Shard>(&store.name, &shard_keys())
        .await?;
    Ok(items
        .iter()
        .filter_map(|item| item.value.map(|s| s.count))
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::{now, record};

    #[test]
    fn only_open_tasks_with_a_due_date_count() {
        let with_due = record(2, Some(now()));
        let mut closed = with_due.clone();
        closed.open = false;
        assert_eq!(delta(None, &with_due), 1);
        assert_eq!(delta(Some(&with_due), &closed), -1);
        assert_eq!(delta(Some(&with_due), &with_due), 0);
        assert_eq!(delta(None, &record(1, None)), 0);
        assert_eq!(shard_keys().len(), 16);
    }
}
