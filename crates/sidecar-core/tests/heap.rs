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

/// A UUID's text from the stream.
fn uuid(seed: &mut u64) -> String {
    let h = hex(seed, 32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The keys the services keep for one task, shaped as they write them: the task record, the
/// reminder-scheduler's entry, the email record (with its TTL), the audit chunk, head and
/// dedupe markers of the task's two events.
fn task_keys(seed: &mut u64, user: &str) -> Vec<(String, Vec<u8>, Option<i64>)> {
    let task = uuid(seed);
    let event = uuid(seed);
    let time = "2026-12-07T07:03:29.860693Z";
    let record = serde_json::json!({
        "deleted": false, "recent_events": [{"event_id": event, "version": 1}],
        "task": {"created_at": time, "description": "", "due_date": null, "priority": "medium",
                 "status": "open", "task_id": task, "title": format!("Load test {}", hex(seed, 10)),
                 "updated_at": time, "user_email": "user@example.com", "user_id": user,
                 "version": 1}
    });
    let reminder = serde_json::json!({
        "task_id": task, "user_id": user, "user_email": "user@example.com",
        "title": format!("Load test {}", hex(seed, 10)), "due_date": null, "status": "open",
        "version": 1, "updated_at": time, "reminded_for": null
    });
    let email = serde_json::json!({
        "status": "sent", "event_id": event, "task_id": task, "recipient": "user@example.com",
        "message_id": format!("<{}@todo.local>", uuid(seed)), "sent_at": time
    });
    let head = serde_json::json!({"chunk": 0, "count": 2, "last_hash": hex(seed, 64)});
    let marker = |seed: &mut u64| {
        (
            format!("audit-logger||ev:{}", &hex(seed, 22)),
            br#"{"t":0,"u":12}"#.to_vec(),
            None,
        )
    };
    vec![
        (
            format!("task-api||task:{task}"),
            serde_json::to_vec(&record).unwrap(),
            None,
        ),
        (
            format!("reminder-scheduler||task:{task}"),
            serde_json::to_vec(&reminder).unwrap(),
            None,
        ),
        (
            format!("email-worker||email:{event}"),
            serde_json::to_vec(&email).unwrap(),
            Some(1_209_600),
        ),
        (
            format!("audit-logger||trail:task:{task}:0"),
            trail_chunk(seed),
            None,
        ),
        (
            format!("audit-logger||trail:task:{task}:head"),
            serde_json::to_vec(&head).unwrap(),
            None,
        ),
        marker(seed),
        marker(seed),
    ]
}

#[tokio::test]
async fn the_keys_kept_per_task_cost_less_than_half_their_text() {
    let _serial = SERIAL.lock().await;
    let _profiler = dhat::Profiler::builder().testing().build();
    let store = InMemoryStateStore::new(None);
    let mut seed = 11;
    let users: Vec<String> = (0..16).map(|_| uuid(&mut seed)).collect();
    const TASKS: usize = 5_000;
    let mut text = 0;
    let before = heap_now();
    for i in 0..TASKS {
        for (key, value, ttl) in task_keys(&mut seed, &users[i % users.len()]) {
            text += key.len() + value.len();
            store.set(save(key, value, ttl)).await.unwrap();
        }
    }
    let held = heap_now().saturating_sub(before) as usize;
    let (per_task, text_per_task) = (held / TASKS, text / TASKS);
    eprintln!(
        "{TASKS} tasks: {per_task} bytes held per task for {text_per_task} bytes of keys and values"
    );
    assert!(
        per_task * 2 < text_per_task,
        "{per_task} bytes held per task for {text_per_task} bytes of keys and values"
    );
    // Every key still reads back exactly, the first ones (before the dictionary) too.
    let mut seed = 11;
    let users: Vec<String> = (0..16).map(|_| uuid(&mut seed)).collect();
    for i in 0..TASKS {
        for (key, value, _) in task_keys(&mut seed, &users[i % users.len()]) {
            let item = store.get(&key).await.unwrap().unwrap();
            assert_eq!(item.data, Bytes::from(value), "{key}");
        }
    }
}

/// Keys that expire (the emails' records, kept for weeks) add no small blocks of their own to
/// the heap: a long-lived small block, allocated while requests and deliveries allocate and
/// free blocks of its size by the thousand, keeps the whole page it landed on resident. The
/// store's keys and values are in large chunks; so is the index of their expiries.
#[tokio::test]
async fn expiring_keys_hold_no_small_blocks() {
    let _serial = SERIAL.lock().await;
    let _profiler = dhat::Profiler::builder().testing().build();
    let store = InMemoryStateStore::new(None);
    store
        .set(save("kept".into(), b"1".to_vec(), None))
        .await
        .unwrap();
    let blocks = || dhat::HeapStats::get().curr_blocks;
    let before = blocks();
    const KEYS: usize = 20_000;
    for i in 0..KEYS {
        let key = format!("email-worker||email:{i:036}");
        let sent = format!(r#"{{"status":"sent","claim":"{i:036}"}}"#).into_bytes();
        store.set(save(key, sent, Some(14 * 86_400))).await.unwrap();
    }
    let added = blocks() - before;
    // The chunks the keys fill (about 60 bytes each: five 256 KiB chunks), the table and the
    // index, and what the sampling for the value dictionary holds until the dictionary exists.
    assert!(
        added < 64,
        "{KEYS} expiring keys added {added} heap blocks: the store holds something per few keys \
         outside its chunks"
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

/// Keys rewritten again and again (a task's record on every update, a trail's head on every
/// entry) leave the space of their old values behind; the sweeper compacts it away, so the
/// store holds about one generation of its values, not every generation it was written.
#[tokio::test]
async fn rewritten_keys_leave_no_holes_once_the_sweeper_has_compacted() {
    let _serial = SERIAL.lock().await;
    let _profiler = dhat::Profiler::builder().testing().build();
    let store = InMemoryStateStore::new(None).with_sweep_interval(Duration::from_millis(50));
    const KEYS: usize = 30_000;
    let mut seed = 5;
    // Generation 0 writes every key; the later ones three keys in four, so the chunks the
    // first generation filled keep a quarter of their slots and are never freed whole.
    let write = |generation: usize, seed: &mut u64| {
        (0..KEYS)
            .filter(|i| generation == 0 || i % 4 != 0)
            .map(|i| SetRequest {
                key: format!("task-api||task:{i:036}"),
                // Hex does not compress much: about 150 bytes held per value.
                value: Bytes::from(format!(
                    r#"{{"generation":{generation},"v":"{}"}}"#,
                    hex(seed, 200)
                )),
                etag: None,
                concurrency: Concurrency::LastWrite,
                ttl_seconds: None,
            })
            .collect::<Vec<_>>()
    };
    let before = heap_now();
    for req in write(0, &mut seed) {
        store.set(req).await.unwrap();
    }
    let one_generation = heap_now() - before;
    for generation in 1..=5 {
        for req in write(generation, &mut seed) {
            store.set(req).await.unwrap();
        }
    }
    // Poll with a deadline: the sweeper compacts a batch per hold of the lock every 50 ms.
    let limit = before + one_generation * 5 / 4 + 1024 * 1024;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut held = heap_now();
    while Instant::now() < deadline && held > limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        held = heap_now();
    }
    assert!(
        held <= limit,
        "{KEYS} keys written in six generations hold {} bytes after compaction; one generation \
         held {one_generation}",
        held - before
    );
    assert!(
        store.reserved_bytes() < store.held_bytes() * 3 / 2 + 1024 * 1024,
        "{} bytes reserved for {} held",
        store.reserved_bytes(),
        store.held_bytes()
    );
    let item = store
        .get(&format!("task-api||task:{:036}", KEYS - 1))
        .await
        .unwrap()
        .unwrap();
    assert!(
        std::str::from_utf8(&item.data)
            .unwrap()
            .contains(r#""generation":5"#),
        "the last generation is the one read"
    );
    assert_eq!(item.etag.as_deref(), Some("6"));
}

/// The in-memory broker after a backlog: a consumer group that fell hundreds of thousands of
/// messages behind during a load run (a subscriber slower than its publishers) holds them all
/// queued, and once it has caught up the queue must not keep its peak size, or the runner keeps
/// memory for every message of the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_broker_backlog_gives_its_memory_back() {
    use sidecar_core::components::{
        InMemoryPubSub, Message, MessageHandler, PubSub, SubscribeRequest,
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let _serial = SERIAL.lock().await;
    let _profiler = dhat::Profiler::builder().testing().build();
    const MESSAGES: usize = 20_000;
    let bus = InMemoryPubSub::with_idle_group_timeout(Duration::from_secs(60));
    let req = SubscribeRequest {
        topic: "task-created".into(),
        consumer_group: "audit-logger".into(),
        concurrency: 4,
        bulk_max_messages: None,
    };
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let handler: MessageHandler = Arc::new(move |_m| {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    });
    // The group exists (its subscriber is away), so what is published meanwhile queues up.
    bus.subscribe(req.clone(), handler.clone())
        .await
        .unwrap()
        .close()
        .await;
    let before = heap_now();
    let mut seed = 11;
    for _ in 0..MESSAGES {
        let body = format!(
            "{{\"task_id\":\"{}\",\"title\":\"{}\"}}",
            hex(&mut seed, 32),
            hex(&mut seed, 120)
        );
        bus.publish(Message {
            topic: "task-created".into(),
            data: Bytes::from(body),
            metadata: Default::default(),
        })
        .await
        .unwrap();
    }
    let backlog = heap_now() - before;
    assert_eq!(bus.queued("task-created", "audit-logger"), Some(MESSAGES));
    assert!(
        backlog > (MESSAGES * 160) as u64,
        "the backlog is held: {backlog} bytes"
    );

    let back = bus.subscribe(req, handler).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while handled.load(Ordering::SeqCst) < MESSAGES {
        assert!(Instant::now() < deadline, "the backlog drains");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    back.close().await;
    let left = heap_now().saturating_sub(before);
    assert!(
        left < backlog / 50,
        "after draining, the queue keeps {left} bytes of the backlog's {backlog}"
    );
}

/// Sends one HTTP/1.1 request on `stream` and reads its whole response; the connection stays
/// open. Returns the status code.
async fn exchange(stream: &mut tokio::net::TcpStream, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the sidecar closed the connection");
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if response.len() >= head_end + 4 + length {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

/// A connection that once carried a large body (audit-logger's bulk saves are up to 1 MiB) holds
/// no large read buffer while it waits, idle, in its client's pool: the services keep up to 128
/// connections each to their sidecar, so a buffer grown to the body's size and kept would cost
/// the runner tens of megabytes that no task accounts for.
#[tokio::test]
async fn idle_connections_that_carried_large_bodies_hold_small_buffers() {
    let _serial = SERIAL.lock().await;
    let _profiler = dhat::Profiler::builder().testing().build();
    let cluster = sidecar_testing::Cluster::in_memory().await.unwrap();
    let sidecar = cluster.sidecar("heap").start().await.unwrap();
    let url = format!("{}/v1.0/state/todo-state", sidecar.http_endpoint());
    let stored = reqwest::Client::new()
        .post(&url)
        .body(r#"[{"key":"k","value":1}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 204);
    // A save with a stale etag: the sidecar reads and parses the whole body, then keeps nothing.
    let mut seed = 3;
    let body = format!(
        r#"[{{"key":"k","etag":"99","value":"{}"}}]"#,
        hex(&mut seed, 512 * 1024)
    );
    let request = format!(
        "POST /v1.0/state/todo-state HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    const CONNECTIONS: usize = 16;
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(
            tokio::net::TcpStream::connect(("127.0.0.1", sidecar.port()))
                .await
                .unwrap(),
        );
    }
    let before = heap_now();
    for stream in &mut connections {
        assert_eq!(exchange(stream, &request).await, 409);
    }
    // Each connection has answered, and waits for its next request.
    let held = heap_now().saturating_sub(before) as usize;
    eprintln!("{CONNECTIONS} idle connections hold {held} bytes after a 512 KiB body each");
    assert!(
        held < CONNECTIONS * 32 * 1024,
        "{CONNECTIONS} idle connections hold {held} bytes, {} each: a connection keeps a read \
         buffer grown to the largest body it carried",
        held / CONNECTIONS
    );
    drop(connections);
    cluster.shutdown().await;
}
