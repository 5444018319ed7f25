//! The names of the state keys (the sidecar prefixes each with the app id, so no other service
//! sees them) and the stable hash that spreads tasks over index buckets and outbox shards.

use uuid::Uuid;

/// How many keys a user's index is split over. Part of the stored layout: changing it would
/// leave summaries in buckets nobody reads.
pub const INDEX_BUCKETS: u32 = 16;

/// The record of a task (a tombstone once it is deleted).
pub fn task_key(id: Uuid) -> String {
    format!("task:{id}")
}

/// Every bucket key of a user's index, for a list.
pub fn index_keys(user_id: Uuid) -> Vec<String> {
    (0..INDEX_BUCKETS)
        .map(|bucket| index_bucket_key(user_id, bucket))
        .collect()
}

/// The head of bucket `bucket` of a user's index.
pub fn index_bucket_key(user_id: Uuid, bucket: u32) -> String {
    format!("user:{user_id}:tasks:{bucket}")
}

/// A sealed segment of bucket `bucket` of a user's index.
pub fn index_segment_key(user_id: Uuid, bucket: u32, segment: Uuid) -> String {
    format!("user:{user_id}:tasks:{bucket}:{segment}")
}

/// Open-task slot `n` of a user: present while one of the user's open tasks holds it (its
/// value is that task's id), see [`crate::repository::limit`].
pub fn slot_key(user_id: Uuid, n: u32) -> String {
    format!("user:{user_id}:open:{n}")
}

/// Shard `shard` of the outbox of writer `instance` in the layout before entries had keys of
/// their own; no longer written, only drained.
pub fn outbox_key(instance: Uuid, shard: u32) -> String {
    format!("outbox:{instance}:{shard}")
}

/// The outbox entry of writer `instance`'s event number `seq`: one key per event, written in
/// the change's own transaction (see [`crate::outbox`]).
pub fn outbox_event_key(instance: Uuid, seq: u64) -> String {
    format!("outbox:{instance}:e{seq}")
}

/// The event numbers writer `instance` may have used: `[low, high)` (see [`crate::outbox`]).
pub fn outbox_range_key(instance: Uuid) -> String {
    format!("outbox-range:{instance}")
}

/// A shard of the layout before outboxes had owners; no longer written, only drained.
pub fn legacy_outbox_key(shard: u32) -> String {
    format!("outbox:{shard}")
}

/// The registry of outbox writers: which instances may have shards.
pub const INSTANCES_KEY: &str = "outbox-instances";

/// The lease of an outbox writer: present (with a TTL) while the process renews it.
pub fn lease_key(instance: Uuid) -> String {
    format!("outbox-lease:{instance}")
}

/// The bucket (of `buckets`) a task falls in: FNV-1a of the id's bytes, stable across builds and
/// replicas (std's hasher is randomly seeded, which would scatter one task over buckets).
pub fn bucket_of(task_id: Uuid, buckets: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in task_id.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % buckets.max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_in_range() {
        let id = Uuid::parse_str("0190a5b8-7c1e-7d3a-9f00-123456789abc").unwrap();
        assert_eq!(bucket_of(id, 16), bucket_of(id, 16));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let s = bucket_of(Uuid::now_v7(), 16);
            assert!(s < 16);
            seen.insert(s);
        }
        assert!(seen.len() > 8, "ids spread over shards: {seen:?}");
    }
}
