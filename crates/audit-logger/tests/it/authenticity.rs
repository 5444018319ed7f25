//! Authenticity: the chain is keyed, the head is checked, and signed checkpoints on the audit
//! log stream catch what the store alone cannot show (a deleted trail, a tail cut back with its
//! head, a whole trail rewritten from genuine entries).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;
use crate::tamper::{rewrite_chunk, task_with_entries};

use dapr_http::SaveItem;
use serde_json::{Value, json};
use service_testing::eventually;
use support::*;

fn trail_name(life: &TaskFixture) -> String {
    format!("trail:task:{}", life.id())
}

/// Edits the last of 3 entries and gives it the hash `rehash` computes.
async fn forge_last_entry(
    app: &TestApp,
    life: &TaskFixture,
    rehash: impl FnOnce(&audit_logger::entry::Entry) -> String,
) -> Value {
    let entries = app.trail(&format!("/audit/tasks/{}", life.id())).await;
    let mut e: audit_logger::entry::Entry = serde_json::from_value(entries[2].clone()).unwrap();
    e.draft.detail = Some("nothing happened".into());
    e.hash = rehash(&e);
    rewrite_chunk(app, life, 0, |entries| {
        entries[2] = serde_json::to_value(&e).unwrap();
    })
    .await;
    app.get(&format!("/audit/tasks/{}/verify", life.id())).await
}

#[tokio::test]
async fn a_last_entry_rehashed_with_plain_sha256_is_reported() {
    // The last entry has no successor whose link would break: only the key can tell.
    let (app, life) = task_with_entries(3, 10).await;
    let result = forge_last_entry(&app, &life, |e| e.legacy_hash()).await;
    assert_eq!(result["valid"], false, "{result}");
    assert_eq!(result["first_broken"]["index"], 2);
    assert_eq!(result["first_broken"]["problem"], "unkeyed");
}

#[tokio::test]
async fn a_last_entry_rehashed_with_another_key_is_reported() {
    let (app, life) = task_with_entries(3, 10).await;
    let other = audit_logger::chain_key::ChainKey::new(
        &"someone-elses-key-0123456789abcdef0123".to_owned().into(),
    )
    .unwrap();
    let trail = trail_name(&life);
    let result = forge_last_entry(&app, &life, |e| e.compute_hash(&other, &trail)).await;
    assert_eq!(result["valid"], false, "{result}");
    assert_eq!(result["first_broken"]["index"], 2);
    assert_eq!(result["first_broken"]["problem"], "entry_hash");
}

#[tokio::test]
async fn a_tail_cut_back_with_a_shortened_head_is_reported_by_the_head_check() {
    let (app, life) = task_with_entries(3, 10).await;
    rewrite_chunk(&app, &life, 0, |entries| {
        entries.pop();
    })
    .await;
    // The head now counts 2, as if nothing had been removed; its last hash still names the
    // removed entry, which the chain does not have at position 1.
    let dapr = app.dapr();
    let key = format!("{}:head", trail_name(&life));
    let mut head = dapr
        .get_state::<Value>(events::STATE_STORE_NAME, &key)
        .await
        .unwrap()
        .unwrap()
        .value;
    head["count"] = json!(2);
    dapr.save_state(
        events::STATE_STORE_NAME,
        &[SaveItem::new(&key, &head).unwrap()],
    )
    .await
    .unwrap();
    let result = app.get(&format!("/audit/tasks/{}/verify", life.id())).await;
    assert_eq!(result["valid"], false, "{result}");
    assert_eq!(result["first_broken"]["problem"], "head");
    assert_eq!(result["first_broken"]["index"], 1);
}

/// Settings with checkpoints every 100 ms.
fn checkpointing() -> audit_logger::Settings {
    let mut s = settings();
    s.checkpoint_interval = std::time::Duration::from_millis(100);
    s
}

/// The latest checkpoint of `trail` on the log stream, once it covers `length` entries.
async fn checkpoint_of(app: &TestApp, trail: &str, length: u64) -> Value {
    eventually(format!("a checkpoint of {trail} at {length}"), || async {
        app.lines
            .lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["log"] == "audit-checkpoint" && v["trail"] == trail)
            .find(|v| v["length"] == length)
    })
    .await
}

async fn check_checkpoints(app: &TestApp, checkpoints: Vec<Value>) -> Value {
    let response = app
        .client
        .post(app.url("/audit/checkpoints/verify"))
        .bearer_auth(TOKEN)
        .json(&json!({ "checkpoints": checkpoints }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Removes every key of the task's trail: chunks, head and dedupe markers.
async fn delete_trail(app: &TestApp, life: &TaskFixture, entries: &[Value]) {
    let dapr = app.dapr();
    let trail = trail_name(life);
    let mut keys = vec![format!("{trail}:0"), format!("{trail}:head")];
    keys.extend(
        entries
            .iter()
            .map(|e| format!("{trail}:event:{}", e["entry_id"].as_str().unwrap())),
    );
    for key in keys {
        dapr.delete_state(events::STATE_STORE_NAME, &key, None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_deleted_trail_is_reported_against_the_checkpoints() {
    let app = spawn_with(checkpointing()).await;
    let task_api = app.producer("task-api").await;
    let mut life = TaskFixture::new();
    let path = format!("/audit/tasks/{}", life.id());
    publish(&task_api, &life.created()).await;
    publish(&task_api, &life.update()).await;
    let entries = app.wait_for_entries(&path, 2).await;
    let checkpoint = checkpoint_of(&app, &trail_name(&life), 2).await;
    let report = check_checkpoints(&app, vec![checkpoint.clone()]).await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["results"][0]["status"], "ok");

    delete_trail(&app, &life, &entries).await;
    // The store alone cannot tell: an absent trail is an empty, valid one.
    let result = app.get(&format!("{path}/verify")).await;
    assert_eq!(
        (&result["valid"], &result["entries"]),
        (&json!(true), &json!(0))
    );
    let report = check_checkpoints(&app, vec![checkpoint]).await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["results"][0]["status"], "missing_entries");
    assert_eq!(report["results"][0]["stored_length"], 0);
}

#[tokio::test]
async fn a_rewrite_of_the_whole_trail_is_reported_against_the_checkpoints() {
    let app = spawn_with(checkpointing()).await;
    let task_api = app.producer("task-api").await;
    let mut life = TaskFixture::new();
    let path = format!("/audit/tasks/{}", life.id());
    publish(&task_api, &life.created()).await;
    publish(&task_api, &life.update()).await;
    publish(&task_api, &life.update()).await;
    let entries = app.wait_for_entries(&path, 3).await;
    let checkpoint = checkpoint_of(&app, &trail_name(&life), 3).await;

    // Someone with the store (and the service itself as an accomplice: every entry below is
    // genuinely signed) replaces the trail with another history of the same task.
    delete_trail(&app, &life, &entries).await;
    let mut other = life.at(1, None).title("another history");
    publish(&task_api, &other.created()).await;
    publish(&task_api, &other.update()).await;
    publish(&task_api, &other.update()).await;
    let rewritten = app.wait_for_entries(&path, 3).await;
    assert_ne!(rewritten[2]["hash"], entries[2]["hash"]);
    assert_eq!(app.get(&format!("{path}/verify")).await["valid"], true);

    let report = check_checkpoints(&app, vec![checkpoint]).await;
    assert_eq!(report["valid"], false, "{report}");
    let result = &report["results"][0];
    assert_eq!(result["status"], "hash_mismatch", "{report}");
    assert_eq!(result["stored_hash"], rewritten[2]["hash"]);
}

#[tokio::test]
async fn a_forged_checkpoint_is_refused() {
    let app = spawn_with(checkpointing()).await;
    let task_api = app.producer("task-api").await;
    let life = TaskFixture::new();
    publish(&task_api, &life.created()).await;
    app.wait_for_entries(&format!("/audit/tasks/{}", life.id()), 1)
        .await;
    let mut checkpoint = checkpoint_of(&app, &trail_name(&life), 1).await;
    checkpoint["length"] = json!(0);
    let report = check_checkpoints(&app, vec![checkpoint]).await;
    assert_eq!(report["results"][0]["status"], "bad_signature", "{report}");

    let response = app
        .client
        .post(app.url("/audit/checkpoints/verify"))
        .bearer_auth(TOKEN)
        .json(&json!({"checkpoints": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
