//! Crashes and failed writes at any step of an append neither lose nor double an entry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use audit_logger::entry::EntryDraft;
use audit_logger::trail::{Appended, TrailId, TrailStore};
use chrono::Utc;
use dapr_http::SaveItem;
use support::*;

fn draft(life: &mut TaskFixture) -> EntryDraft {
    let envelope = serde_json::to_value(life.update()).unwrap();
    EntryDraft::from_envelope("task-updated", "", "task-api", &envelope, Utc::now()).unwrap()
}

async fn verify(app: &TestApp, life: &TaskFixture) -> serde_json::Value {
    app.get(&format!("/audit/tasks/{}/verify", life.id())).await
}

#[tokio::test]
async fn lost_or_stale_heads_and_orphan_markers_are_harmless() {
    let mut settings = settings();
    settings.trail_chunk_size = 2;
    let app = spawn_with(settings).await;
    let trails = &app.handle.trails;
    let mut life = TaskFixture::new();
    let trail = TrailId::Task(life.id().to_string());
    let dapr = app.dapr();
    let store = events::STATE_STORE_NAME;

    let first = draft(&mut life);
    assert!(matches!(
        trails.append(&trail, first.clone()).await.unwrap(),
        Appended::New(_)
    ));
    // A crash after the chunk write, before the head: the head is gone; the redelivery finds
    // the entry, and the next entry still links to it.
    dapr.delete_state(store, &trail.head_key(), None)
        .await
        .unwrap();
    assert_eq!(
        trails.append(&trail, first.clone()).await.unwrap(),
        Appended::Duplicate { seq: 0 }
    );
    for _ in 0..4 {
        trails.append(&trail, draft(&mut life)).await.unwrap();
    }
    // A head that went back (two replicas wrote it out of order): appends walk forward.
    let stale = serde_json::json!({"chunk": 0, "count": 1, "last_hash": "x"});
    dapr.save_state(store, &[SaveItem::new(trail.head_key(), &stale).unwrap()])
        .await
        .unwrap();
    // A replica that has not appended to this trail yet starts from the stale head.
    let other_replica = TrailStore::new(app.dapr(), store.into(), chain_key(), 2, 64);
    let after_stale = draft(&mut life);
    match other_replica
        .append(&trail, after_stale.clone())
        .await
        .unwrap()
    {
        Appended::New(entry) => assert_eq!(entry.seq, 5),
        other => panic!("{other:?}"),
    }
    // A crash after the marker, before the chunk write: the redelivery appends it.
    let orphan = draft(&mut life);
    let marker = SaveItem::new(
        trail.marker_key(&orphan.entry_id),
        &serde_json::json!({"from_chunk": 1}),
    )
    .unwrap()
    .first_write();
    dapr.save_state(store, &[marker]).await.unwrap();
    match trails.append(&trail, orphan.clone()).await.unwrap() {
        Appended::New(entry) => assert_eq!(entry.seq, 6),
        other => panic!("{other:?}"),
    }
    // An old event redelivered much later is still found (its marker bounds the search).
    assert_eq!(
        trails.append(&trail, first).await.unwrap(),
        Appended::Duplicate { seq: 0 }
    );
    assert_eq!(
        trails.append(&trail, after_stale).await.unwrap(),
        Appended::Duplicate { seq: 5 }
    );
    let result = verify(&app, &life).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["entries"], 7);
}

#[tokio::test]
async fn a_failing_store_during_recording_ends_with_the_event_in_the_trail() {
    let app = spawn_app().await;
    let task_api = app.producer("task-api").await;
    let life = TaskFixture::new();
    let created = life.created();
    // The first state call of the delivery fails: the app answers RETRY, and with a dead-letter
    // topic and no retry policy the sidecar dead-letters it to audit-logger-dead-letters, where
    // the app records it after all (and keeps it as a dead letter for the record).
    app.cluster.faults().fail_next_state_ops(1);
    publish(&task_api, &created).await;
    let dlq = app
        .cluster
        .wait_for_published("audit-logger-dead-letters", 1, DEADLINE)
        .await
        .unwrap();
    assert_eq!(dlq[0]["topic"], "task-created");
    let entries = app
        .wait_for_entries(&format!("/audit/tasks/{}", life.id()), 2)
        .await;
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"event") && kinds.contains(&"dead_letter"),
        "{kinds:?}"
    );
    assert_eq!(entries.len(), 2);
    let page = app.get("/audit/dead-letters").await;
    assert_eq!(
        page["dead_letters"][0]["dropped_by"][0]["app_id"],
        "audit-logger"
    );
    assert_eq!(verify(&app, &life).await["valid"], true);
}

#[tokio::test]
async fn an_event_recorded_in_two_trails_leaves_one_short_marker() {
    let app = spawn_app().await;
    let task_api = app.producer("task-api").await;
    let life = TaskFixture::new();
    let created = life.created();
    publish(&task_api, &created).await;
    app.wait_for_entries(&format!("/audit/users/{}", life.user()), 1)
        .await;
    app.wait_for_entries(&format!("/audit/tasks/{}", life.id()), 1)
        .await;
    let keys = app.cluster.state_keys(APP).await;
    let markers: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains(":event:") || k.starts_with("ev:") || k.starts_with("ek:"))
        .collect();
    let expected = audit_logger::markers::event_marker_key(&created.event_id.to_string());
    assert_eq!(markers, [&expected], "{keys:?}");
    assert!(expected.len() <= 25, "{expected}");
    // It bounds both trails.
    let marker = app.cluster.state_of(APP, &expected).await.unwrap();
    assert_eq!(marker, serde_json::json!({"t": 0, "u": 0}));
}

#[tokio::test]
async fn entries_and_markers_of_the_old_layout_still_dedupe_and_verify() {
    let mut settings = settings();
    settings.trail_chunk_size = 2;
    let app = spawn_with(settings).await;
    let dapr = app.dapr();
    let store = events::STATE_STORE_NAME;
    let mut life = TaskFixture::new();
    let trail = TrailId::Task(life.id().to_string());
    // An entry appended before the marker layout changed: its chunk is as today, its marker
    // is the old per-trail one and the new one does not exist.
    let old = draft(&mut life);
    assert!(matches!(
        app.handle.trails.append(&trail, old.clone()).await.unwrap(),
        Appended::New(_)
    ));
    dapr.delete_state(
        store,
        &audit_logger::markers::event_marker_key(&old.entry_id),
        None,
    )
    .await
    .unwrap();
    let legacy = SaveItem::new(
        trail.marker_key(&old.entry_id),
        &serde_json::json!({"from_chunk": 0}),
    )
    .unwrap()
    .first_write();
    dapr.save_state(store, &[legacy]).await.unwrap();
    // The trail moves on past that chunk.
    for _ in 0..4 {
        app.handle
            .trails
            .append(&trail, draft(&mut life))
            .await
            .unwrap();
    }
    // The old event redelivered, to a replica that knows the tail (chunk 2) and to one that
    // does not: both find it through the old marker instead of appending it again.
    assert_eq!(
        app.handle.trails.append(&trail, old.clone()).await.unwrap(),
        Appended::Duplicate { seq: 0 }
    );
    let other_replica = TrailStore::new(app.dapr(), store.into(), chain_key(), 2, 64);
    assert_eq!(
        other_replica
            .append_batch(&trail, vec![old.clone(), draft(&mut life)])
            .await
            .unwrap()[0],
        Appended::Duplicate { seq: 0 }
    );
    // The new marker took the old bound over.
    let marker = app
        .cluster
        .state_of(APP, &audit_logger::markers::event_marker_key(&old.entry_id))
        .await
        .unwrap();
    assert_eq!(marker, serde_json::json!({"t": 0}));
    let result = verify(&app, &life).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["entries"], 6);
}
