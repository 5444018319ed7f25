//! The user index as a projection of committed changes, settled off the request path.
//!
//! A change's transaction writes its task and its outbox entry, no index key. The outbox's
//! cleaner (every `INDEX_PROJECTION_INTERVAL`, default 250 ms) hands the tasks of the entries
//! it knows committed to [`TaskRepository::project`], which brings their summaries in line with
//! their records: grouped by index bucket, a bulk read of the buckets' heads, then a bulk
//! read of the tasks' records, then one transaction writing their heads (and the sealed segments
//! they touch, and a new segment when a head overflows), each etag-checked; 16 buckets at a
//! time, one chunk after the other, so a pass never stalls the requests beside it. An
//! entry's key is deleted only after its task's bucket was written (or needed no write): a
//! crash between commit and projection leaves the key, and whoever drains it projects it first.
//!
//! # Why from the records, read after the heads
//!
//! A summary is taken from the task's current record, not from the entry, so replaying an
//! old entry, projecting twice, or in any order, writes what the record says now: a deleted or
//! missing task loses its summary. A bucket's head writes are ordered by its etag, and each
//! writer reads the records after the head it replaces, so a later write of a head never carries
//! an older record than an earlier one: the index converges on the records. A sealed segment
//! is never written without its head (even when the head's counts are unchanged), so its writes
//! are ordered by the head's etag too. Readers still
//! check every page against the records (`crate::listing`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use dapr_http::{SaveItem, TransactionOp};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::index::{IndexSegment, TaskSummary, UserIndex, reconcile};
use super::keys::{INDEX_BUCKETS, bucket_of, index_bucket_key, index_segment_key, task_key};
use super::{IndexLayout, StoreError, TaskRepository, Versioned};
use crate::model::TaskRecord;

/// Index buckets written per projection transaction.
const PROJECTION_BATCH: usize = 16;

/// Makes `tasks` agree with `record` (a missing, deleted or foreign record removes the
/// summary of `id`); returns whether anything changed.
fn apply(
    tasks: &mut Vec<TaskSummary>,
    id: Uuid,
    user_id: Uuid,
    record: Option<&TaskRecord>,
) -> bool {
    match record {
        Some(record) if record.task.user_id == user_id => reconcile(tasks, record),
        _ => match tasks.binary_search_by(|s| id.cmp(&s.id)) {
            Ok(i) => {
                tasks.remove(i);
                true
            }
            Err(_) => false,
        },
    }
}

impl TaskRepository {
    /// Brings the index summaries of `changed` (owner, task) in line with the tasks' records.
    /// Returns the tasks whose bucket is now written; a bucket whose write lost a race or
    /// failed is left out (call again: it is idempotent).
    pub async fn project(&self, changed: &[(Uuid, Uuid)]) -> Result<HashSet<Uuid>, StoreError> {
        let mut groups: BTreeMap<(Uuid, u32), BTreeSet<Uuid>> = BTreeMap::new();
        for (user, task) in changed {
            groups
                .entry((*user, bucket_of(*task, INDEX_BUCKETS)))
                .or_default()
                .insert(*task);
        }
        if groups.is_empty() {
            return Ok(HashSet::new());
        }
        // A chunk of buckets at a time, one after the other: each chunk is two bulk reads and
        // one transaction, so a pass never holds the sidecar (or this process's threads) long
        // enough to stall the requests running beside it.
        let groups: Vec<((Uuid, u32), BTreeSet<Uuid>)> = groups.into_iter().collect();
        let mut projected = HashSet::new();
        for chunk in groups.chunks(PROJECTION_BATCH) {
            match self.project_chunk(chunk).await {
                Ok(done) => projected.extend(done),
                Err(error) if chunk.len() > 1 => {
                    // One bucket's bad key or lost race fails the whole chunk: each bucket is
                    // tried on its own, so it holds back no other (another user's above all).
                    tracing::debug!(%error, "index projection of a chunk failed; one bucket at a time");
                    for group in chunk {
                        match self.project_chunk(std::slice::from_ref(group)).await {
                            Ok(done) => projected.extend(done),
                            Err(error) => {
                                tracing::debug!(%error, "index projection lost a race or failed; will redo");
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "index projection lost a race or failed; will redo");
                }
            }
        }
        Ok(projected)
    }

    /// Projects one chunk of buckets: their heads, then their tasks' records (after the heads,
    /// see the module doc), then one transaction. Returns the tasks now in line; a failed
    /// transaction (one etag check failed, and on a store that does not roll back the other
    /// buckets' writes applied) is an error, and the caller's next round re-reads and finds
    /// those buckets already in line.
    async fn project_chunk(
        &self,
        chunk: &[((Uuid, u32), BTreeSet<Uuid>)],
    ) -> Result<Vec<Uuid>, StoreError> {
        let head_keys: Vec<String> = chunk
            .iter()
            .map(|((user, bucket), _)| index_bucket_key(*user, *bucket))
            .collect();
        let items = self
            .dapr
            .get_bulk_state::<Box<RawValue>>(&self.store, &head_keys)
            .await?;
        if items.len() != head_keys.len() {
            return Err(StoreError::ShortBulkRead);
        }
        let mut heads = Vec::with_capacity(items.len());
        for item in items {
            if let Some(message) = item.error {
                return Err(StoreError::Key {
                    key: item.key,
                    message,
                });
            }
            let value = match item.value {
                None => UserIndex::default(),
                Some(raw) => {
                    serde_json::from_str(raw.get()).map_err(|source| StoreError::Unreadable {
                        key: item.key.clone(),
                        source,
                    })?
                }
            };
            heads.push(Versioned {
                value,
                etag: item.etag,
            });
        }
        let ids: Vec<Uuid> = chunk
            .iter()
            .flat_map(|(_, tasks)| tasks.iter().copied())
            .collect();
        let (records, unreadable) = self.records_by_id(&ids).await?;
        let mut ops = Vec::new();
        for (((user, bucket), tasks), head) in chunk.iter().zip(heads) {
            let tasks: BTreeSet<Uuid> = tasks
                .iter()
                .filter(|id| !unreadable.contains(id))
                .copied()
                .collect();
            ops.extend(
                self.bucket_ops(*user, *bucket, head, &tasks, &records)
                    .await?,
            );
        }
        if !ops.is_empty() {
            self.dapr.transact_state(&self.store, &ops).await?;
        }
        Ok(ids)
    }

    /// The records of `ids` that exist (tombstones included), by id, and the ids whose record
    /// is unreadable; a key the store failed on fails the read, so no summary is removed on a
    /// failed read.
    async fn records_by_id(
        &self,
        ids: &[Uuid],
    ) -> Result<(HashMap<Uuid, TaskRecord>, HashSet<Uuid>), StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| task_key(*id)).collect();
        let items = self
            .dapr
            .get_bulk_state::<Box<RawValue>>(&self.store, &keys)
            .await?;
        let mut records = HashMap::with_capacity(items.len());
        let mut unreadable = HashSet::new();
        for (id, item) in ids.iter().zip(items) {
            if let Some(message) = item.error {
                return Err(StoreError::Key {
                    key: item.key,
                    message,
                });
            }
            let Some(raw) = item.value else { continue };
            match serde_json::from_str::<TaskRecord>(raw.get()) {
                Ok(record) => {
                    records.insert(record.task.task_id, record);
                }
                // Read as one bulk call, an undecodable record must not fail the others' read:
                // its summary is left as it is (a list checks every page against the records).
                Err(error) => {
                    tracing::error!(key = %item.key, %error,
                        "a task record is unreadable; its index summary is left as it is");
                    unreadable.insert(*id);
                }
            }
        }
        Ok((records, unreadable))
    }

    /// The writes of one bucket's head (and segments) that make the summaries of `tasks` agree
    /// with `records`, each checked against what was read; none when they already agree.
    async fn bucket_ops(
        &self,
        user_id: Uuid,
        bucket: u32,
        head: Versioned<UserIndex>,
        tasks: &BTreeSet<Uuid>,
        records: &HashMap<Uuid, TaskRecord>,
    ) -> Result<Vec<TransactionOp>, StoreError> {
        let mut segments = HashMap::new();
        for id in tasks {
            if let Some(home) = head.value.home_of(*id) {
                let segment = head.value.sealed[home].segment;
                if let std::collections::hash_map::Entry::Vacant(slot) = segments.entry(segment) {
                    let key = index_segment_key(user_id, bucket, segment);
                    slot.insert(self.read_segment(&key).await?);
                }
            }
        }
        bucket_writes(
            user_id,
            bucket,
            &head,
            &segments,
            tasks,
            records,
            self.layout,
        )
    }

    /// A sealed segment with its etag; a segment its head lists but the store lacks (its write
    /// was the part of a transaction that did not apply) reads as empty.
    pub(super) async fn read_segment(
        &self,
        key: &str,
    ) -> Result<Versioned<IndexSegment>, StoreError> {
        Ok(
            match self
                .dapr
                .get_state::<IndexSegment>(&self.store, key)
                .await?
            {
                Some(entry) => Versioned {
                    value: entry.value,
                    etag: entry.etag,
                },
                None => Versioned::default(),
            },
        )
    }
}

/// The writes that make the summaries of `tasks` in one bucket agree with `records`, given its
/// head and the sealed segments they live in (`segments`, by id, as read).
///
/// Whenever a segment is written, so is the head, against the etag read before the records:
/// a segment's own etag was read after the records, so another writer that read a newer
/// record and wrote the segment in between would pass that check and be overwritten with the
/// older record. The head's etag orders every write of the bucket after the records it read.
fn bucket_writes(
    user_id: Uuid,
    bucket: u32,
    head: &Versioned<UserIndex>,
    segments: &HashMap<Uuid, Versioned<IndexSegment>>,
    tasks: &BTreeSet<Uuid>,
    records: &HashMap<Uuid, TaskRecord>,
    layout: IndexLayout,
) -> Result<Vec<TransactionOp>, StoreError> {
    let mut next = head.value.clone();
    let mut head_changed = false;
    let mut write_head = false;
    let mut ops = Vec::new();
    let mut in_segments: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
    for id in tasks {
        match head.value.home_of(*id) {
            None => head_changed |= apply(&mut next.tasks, *id, user_id, records.get(id)),
            Some(home) => in_segments
                .entry(head.value.sealed[home].segment)
                .or_default()
                .push(*id),
        }
    }
    let missing = Versioned::default();
    for (segment_id, ids) in in_segments {
        let stored = segments.get(&segment_id).unwrap_or(&missing);
        let mut segment = stored.value.clone();
        let mut changed = false;
        for id in ids {
            changed |= apply(&mut segment.tasks, id, user_id, records.get(&id));
        }
        if changed {
            let key = index_segment_key(user_id, bucket, segment_id);
            ops.push(TransactionOp::Upsert(
                stored.write_in_transaction(key, &segment)?,
            ));
            write_head = true;
        }
        // Recounted even when the segment is unchanged: an earlier transaction may have
        // written the segment and not the head.
        if let Some(entry) = next.sealed_mut(segment_id) {
            head_changed |= entry.recount(&segment);
        }
    }
    if head_changed {
        // A pass may add many summaries to one head: seal until it fits.
        while let Some((id, segment)) = next.seal(layout.head_size, layout.segment_size) {
            // A fresh random key: no other writer can have it, so no etag.
            let key = index_segment_key(user_id, bucket, id);
            ops.push(TransactionOp::Upsert(SaveItem::new(key, &segment)?));
        }
    }
    if head_changed || write_head {
        let key = index_bucket_key(user_id, bucket);
        ops.push(TransactionOp::Upsert(
            head.write_in_transaction(key, &next)?,
        ));
    }
    Ok(ops)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use events::Priority;

    use super::*;

    fn record(id: Uuid, user_id: Uuid, priority: Priority) -> TaskRecord {
        TaskRecord::open_for_test(id, user_id, priority)
    }

    #[test]
    fn a_segment_write_is_checked_against_the_head_read_before_the_records() {
        let user = Uuid::now_v7();
        let bucket = 3;
        let ids: Vec<Uuid> = std::iter::repeat_with(Uuid::now_v7)
            .filter(|id| bucket_of(*id, INDEX_BUCKETS) == bucket)
            .take(65)
            .collect();
        let mut head = UserIndex::default();
        let mut segments = HashMap::new();
        for id in &ids {
            head.reconcile(&record(*id, user, Priority::Low));
            if let Some((segment, sealed)) = head.seal(64, 48) {
                segments.insert(
                    segment,
                    Versioned {
                        value: sealed,
                        // Written by another projection after this one read the head.
                        etag: Some("7".into()),
                    },
                );
            }
        }
        let sealed_task = ids[0];
        assert!(
            head.home_of(sealed_task).is_some(),
            "the task lives in a segment"
        );
        let head = Versioned {
            value: head,
            etag: Some("3".into()),
        };
        // A change that leaves the open count as it is: only the segment's content differs.
        let records = HashMap::from([(sealed_task, record(sealed_task, user, Priority::High))]);
        let ops = bucket_writes(
            user,
            bucket,
            &head,
            &segments,
            &BTreeSet::from([sealed_task]),
            &records,
            IndexLayout::default(),
        )
        .unwrap();
        let writes: Vec<(String, Option<String>)> = ops
            .iter()
            .map(|op| match op {
                TransactionOp::Upsert(item) => (item.key.clone(), item.etag.clone()),
                TransactionOp::Delete { key, etag } => (key.clone(), etag.clone()),
            })
            .collect();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert!(writes.contains(&(index_bucket_key(user, bucket), Some("3".into()))));
    }
}
