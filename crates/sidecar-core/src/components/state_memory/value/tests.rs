#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;

fn chunk(entries: usize) -> Vec<u8> {
    let entries: Vec<serde_json::Value> = (0..entries)
        .map(|i| {
            serde_json::json!({
                "seq": i,
                "entry_id": format!("01a24e1e-6174-76f3-a85a-{i:012}"),
                "user_id": "60038350-b215-4c2d-a07d-5d520c3fb5a8",
                "payload": format!("{{\"task\":{{\"title\":\"Load test {i}\"}}}}"),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "capacity": 100, "entries": entries })).unwrap()
}

/// A task record as a service keeps it: shared field names, its own ids and times.
fn record(i: u64) -> Vec<u8> {
    let id = |n: u64| {
        format!(
            "{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
            n * 7919,
            n % 65_521,
            n % 4093,
            n % 4091,
            n * 104_729
        )
    };
    serde_json::to_vec(&serde_json::json!({
        "deleted": false,
        "recent_events": [{"event_id": id(i + 1), "version": 1}],
        "task": {
            "created_at": format!("2026-12-07T07:03:{:02}.{:06}Z", i % 60, i * 37 % 1_000_000),
            "description": "", "due_date": null, "priority": "medium", "status": "open",
            "task_id": id(i), "title": format!("Load test lg7f3an{i}"),
            "updated_at": format!("2026-12-07T07:03:{:02}.{:06}Z", i % 60, i * 37 % 1_000_000),
            "user_email": format!("user{}@example.com", i % 16), "user_id": id(i % 16 + 1_000_000),
            "version": 1
        }
    }))
    .unwrap()
}

#[test]
fn long_values_are_compressed_and_read_back_unchanged() {
    let codec = Codec::new(0);
    let value = chunk(50);
    let stored = codec.encode("task-api||task:1", &value);
    assert_eq!(stored.form(), Form::Zstd);
    assert!(
        stored.bytes().len() * 3 < value.len(),
        "{} of {}",
        stored.bytes().len(),
        value.len()
    );
    assert_eq!(codec.decode(stored), Some(Bytes::from(value)));
}

#[test]
fn short_and_incompressible_values_are_kept_as_they_are() {
    let codec = Codec::new(0);
    let short = br#"{"from_chunk":0}"#;
    assert_eq!(codec.encode("k", short), Encoded::plain(short));
    // Bytes with no repetition: a frame would be longer than the value.
    let mut state = 7u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            // SplitMix64: no structure a compressor could use.
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect();
    let stored = codec.encode("task-api||task:1", &noise);
    assert_eq!(stored.form(), Form::Plain);
    assert_eq!(codec.decode(stored), Some(Bytes::from(noise)));
    assert_eq!(codec.decode(codec.encode("k", b"")), Some(Bytes::new()));
}

#[test]
fn small_documents_compress_with_the_dictionary() {
    let codec = Codec::new(500);
    let alone = codec.encode("task-api||task:1", &record(0));
    for i in 1..500 {
        codec.encode("task-api||task:1", &record(i));
    }
    assert!(codec.has_dictionary());
    let value = record(10_000);
    let stored = codec.encode("task-api||task:1", &value);
    assert_eq!(stored.form(), Form::ZstdDict);
    // Less than half of what the document costs compressed alone, a third of its length.
    let without = Codec::new(0).encode("task-api||task:1", &value);
    assert!(
        stored.bytes().len() * 2 < without.bytes().len() && stored.bytes().len() * 3 < value.len(),
        "{} bytes with the dictionary, {} without, of {}",
        stored.bytes().len(),
        without.bytes().len(),
        value.len()
    );
    assert_eq!(codec.decode(stored), Some(Bytes::from(value)));
    // A value held before the dictionary still reads.
    assert_eq!(codec.decode(alone), Some(Bytes::from(record(0))));
    // A frame of another store's dictionary does not decode here.
    let other = Codec::new(0);
    assert_eq!(
        other.decode(codec.encode("task-api||task:1", &record(10_001))),
        None
    );
}
