//! Heap held by `state.in-memory`, counted by a tracking allocator (dhat in testing mode): what
//! a run leaves in the store is what the runner's memory keeps, so it is measured in bytes, not
//! guessed from key counts.
//!
//! The tests share the process-wide allocator statistics, so they run one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use sidecar_core::components::{Concurrency, InMemoryStateStore, SetRequest, StateStore};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// One test at a time: a dhat profiler is process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn heap_now() -> u64 {
    dhat::HeapStats::get().curr_bytes as u64
}

/// Hex text that does not repeat (a SplitMix64 stream), standing in for ids and hashes.
fn hex(seed: &mut u64, len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.push_str(&format!("{:016x}", z ^ (z >> 31)));
    }
    out.truncate(len);
    out
}

/// A task's audit trail chunk as audit-logger writes it (two hash-chained entries), serialized
/// the way the state API does it: into a buffer that grows while it is written.
fn trail_chunk(seed: &mut u64) -> Vec<u8> {
    let task = hex(seed, 32);
    let user = hex(seed, 32);
    let entries: Vec<serde_json::Value> = (0..2)
        .map(|seq| {
            let event = hex(seed, 32);
            serde_json::json!({
                "seq": seq, "kind": "event", "entry_id": event, "event_id": event,
                "event_type": "task-created", "topic": "task-created", "source": "task-api",
                "task_id": task, "user_id": user, "task_version": 1,
                "occurred_at": "2026-12-07T01:29:03.604679Z",
                "recorded_at": "2026-12-07T01:29:03.606740Z",
                "correlation_id": hex(seed, 32), "causation_id": null, "detail": null,
                "payload": format!(
                    "{{\"task\":{{\"created_at\":\"2026-12-07T01:29:03.604237Z\",\"description\":\"\",\"priority\":\"medium\",\"status\":\"open\",\"task_id\":\"{task}\",\"title\":\"Load test {}\",\"user_id\":\"{user}\",\"version\":1}}}}",
                    hex(seed, 8)
                ),
                "prev_hash": hex(seed, 64), "hash": hex(seed, 64),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "capacity": 100, "entries": entries })).unwrap()
}

fn save(key: String, value: Vec<u8>, ttl_seconds: Option<i64>) -> SetRequest {
    SetRequest {
        key,
        value: Bytes::from(value),
        etag: None,
        concurrency: Concurrency::FirstWrite,
        ttl_seconds,
    }
}

#[tokio::test]
async fn a_stored_document_costs_less_memory_than_its_length() {
    let _serial = SERIAL.lock().await;
    let _profiler = dhat::Profiler::builder().testing().build();
    let store = InMemoryStateStore::new(None);
    let mut seed = 7;
    const KEYS: usize = 2_000;
    let mut value_bytes = 0;
    let before = heap_now();
    for i in 0..KEYS {
        let value = trail_chunk(&mut seed);
        value_bytes += value.len();
        let key = format!("audit-logger||trail:task:{}:0", hex(&mut seed, 32));
        // Half of them expire (an expiry index entry too), as the services' claims do.
        let ttl = (i % 2 == 0).then_some(3_600);
        store.set(save(key, value, ttl)).await.unwrap();
    }
    let held = heap_now().saturating_sub(before) as usize;
    let per_key = held / KEYS;
    let value_len = value_bytes / KEYS;
    eprintln!("{KEYS} keys: {per_key} bytes held per key for a {value_len}-byte value");
    assert!(
        per_key * 10 < value_len * 7,
        "a {value_len}-byte document costs {per_key} bytes per key: values are held with their \
         buffers' spare capacity or uncompressed, or keys are held twice"
    );
    // And every value still reads back exactly.
    let mut seed = 7;
    let first = trail_chunk(&mut seed);
    let key = format!("audit-logger||trail:task:{}:0", hex(&mut seed, 32));
    assert_eq!(
        store.get(&key).await.unwrap().unwrap().data,
        Bytes::from(first)
    );
}

#[tokio::test]
async fn memory_of_expired_keys_is_given_back_without_any_read() {
    let _serial = SERIAL.lock().await;
    let _profiler = dhat::Profiler::builder().testing().build();
    let store = InMemoryStateStore::new(None).with_sweep_interval(Duration::from_millis(50));
    store
        .set(save("kept".into(), b"1".to_vec(), None))
        .await
        .unwrap();
    let before = heap_now();
    const KEYS: usize = 30_000;
    for i in 0..KEYS {
        let key = format!("email-worker||email:{i:036}");
        let claim = format!(r#"{{"status":"sending","claim":"{i:036}"}}"#).into_bytes();
        store.set(save(key, claim, Some(1))).await.unwrap();
    }
    let peak = heap_now();
    assert!(
        peak > before + 2_000_000,
        "the claims were stored: {before} -> {peak}"
    );
    // Poll with a deadline: the sweeper runs every 50 ms once the claims' second has passed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut left = heap_now();
    while Instant::now() < deadline {
        left = heap_now();
        if store.len_including_expired() == 1 && left < before + 64 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.len_including_expired(), 1, "expired keys evicted");
    assert!(
        left < before + 64 * 1024,
        "{KEYS} expired keys evicted, yet the store still holds {} bytes more than before them \
         (peak {})",
        left - before,
        peak - before
    );
    assert!(store.get("kept").await.unwrap().is_some());
}
