//! Tamper evidence: editing, rehashing or removing stored entries is reported by verify.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use dapr_http::SaveItem;
use serde_json::Value;
use support::*;

/// A task with `n` recorded events, in chunks of `chunk_size`.
pub(crate) async fn task_with_entries(n: usize, chunk_size: usize) -> (TestApp, TaskFixture) {
    let mut settings = settings();
    settings.trail_chunk_size = chunk_size;
    let app = spawn_with(settings).await;
    let task_api = app.producer("task-api").await;
    let mut life = TaskFixture::new();
    let path = format!("/audit/tasks/{}", life.id());
    publish(&task_api, &life.created()).await;
    for i in 1..n {
        app.wait_for_entries(&path, i).await;
        publish(&task_api, &life.update()).await;
    }
    app.wait_for_entries(&path, n).await;
    (app, life)
}

/// Rewrites chunk `chunk` of the task's trail through the audit-logger's own sidecar (as
/// someone with access to the state store could), applying `edit` to its entries.
pub(crate) async fn rewrite_chunk(
    app: &TestApp,
    life: &TaskFixture,
    chunk: u64,
    edit: impl FnOnce(&mut Vec<Value>),
) {
    let dapr = app.dapr();
    let key = format!("trail:task:{}:{chunk}", life.id());
    let stored = dapr
        .get_state::<Value>(events::STATE_STORE_NAME, &key)
        .await
        .unwrap()
        .unwrap();
    let mut value = stored.value;
    edit(value["entries"].as_array_mut().unwrap());
    let item = SaveItem::new(&key, &value).unwrap().etag(stored.etag);
    dapr.save_state(events::STATE_STORE_NAME, &[item])
        .await
        .unwrap();
}

#[tokio::test]
async fn an_altered_entry_is_reported_with_its_index() {
    let (app, life) = task_with_entries(8, 3).await;
    let verify = format!("/audit/tasks/{}/verify", life.id());
    assert_eq!(app.get(&verify).await["valid"], true);
    let entries = app.trail(&format!("/audit/tasks/{}", life.id())).await;
    // Entry 4 is the second entry of chunk 1 (chunks of 3).
    rewrite_chunk(&app, &life, 1, |entries| {
        entries[1]["payload"] = Value::String("{\"task\":\"forged\"}".into());
    })
    .await;
    let result = app.get(&verify).await;
    assert_eq!(result["valid"], false, "{result}");
    let broken = &result["first_broken"];
    assert_eq!(broken["index"], 4);
    assert_eq!(broken["seq"], 4);
    assert_eq!(broken["chunk"], 1);
    assert_eq!(broken["problem"], "entry_hash");
    assert_eq!(broken["event_id"], entries[4]["event_id"]);
    assert_eq!(broken["found"], entries[4]["hash"]);
    assert_ne!(broken["expected"], broken["found"]);
}

#[tokio::test]
async fn a_rehashed_edit_breaks_the_next_link() {
    let (app, life) = task_with_entries(7, 3).await;
    let verify = format!("/audit/tasks/{}/verify", life.id());
    // Recomputing the edited entry's own hash does not help, even with the key: the next entry
    // points at the old one.
    let entries = app.trail(&format!("/audit/tasks/{}", life.id())).await;
    let edited: audit_logger::entry::Entry = {
        let mut e: audit_logger::entry::Entry = serde_json::from_value(entries[2].clone()).unwrap();
        e.draft.detail = Some("nothing happened".into());
        e.hash = e.compute_hash(&chain_key(), &format!("trail:task:{}", life.id()));
        e
    };
    rewrite_chunk(&app, &life, 0, |entries| {
        entries[2] = serde_json::to_value(&edited).unwrap();
    })
    .await;
    let broken = app.get(&verify).await["first_broken"].clone();
    assert_eq!(broken["index"], 3);
    assert_eq!(broken["problem"], "previous_hash");
    assert_eq!(broken["event_id"], entries[3]["event_id"]);
    assert_eq!(broken["expected"], edited.hash.as_str());
    assert_eq!(broken["found"], entries[2]["hash"]);
}

#[tokio::test]
async fn a_removed_last_entry_is_reported_as_truncation() {
    let (app, life) = task_with_entries(5, 3).await;
    rewrite_chunk(&app, &life, 1, |entries| {
        entries.pop();
    })
    .await;
    let result = app.get(&format!("/audit/tasks/{}/verify", life.id())).await;
    assert_eq!(result["valid"], false);
    assert_eq!(result["first_broken"]["problem"], "truncated");
    assert_eq!(result["first_broken"]["index"], 4);
}

#[tokio::test]
async fn an_alteration_beyond_the_first_read_batch_is_found() {
    // One entry per chunk: entry 19 is in chunk 19, in the second batch of chunks verify reads.
    let (app, life) = task_with_entries(21, 1).await;
    let verify = format!("/audit/tasks/{}/verify", life.id());
    assert_eq!(app.get(&verify).await["entries"], 21);
    rewrite_chunk(&app, &life, 19, |entries| {
        entries[0]["recorded_at"] = Value::String("2000-01-01T00:00:00.000000Z".into());
    })
    .await;
    let broken = app.get(&verify).await["first_broken"].clone();
    assert_eq!(broken["index"], 19);
    assert_eq!(broken["chunk"], 19);
    assert_eq!(broken["problem"], "entry_hash");
}
