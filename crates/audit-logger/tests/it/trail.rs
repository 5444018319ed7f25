//! Recording: a task's whole life in its trail and its user's trail, exactly once per event,
//! under concurrency, and as JSON lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use futures::future::join_all;
use serde_json::{Value, json};
use support::*;

fn types(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_tasks_life_is_in_its_trail_and_its_users_trail_in_order() {
    let app = spawn_app().await;
    let task_api = app.producer("task-api").await;
    let scheduler = app.producer("reminder-scheduler").await;
    let mailer = app.producer("email-worker").await;
    let mut life = TaskFixture::new();
    let task_path = format!("/audit/tasks/{}", life.id());
    // Each step is a separate action in the product, published after the previous one took
    // effect; the trail records them in arrival order (its `seq`).
    let created = life.created();
    publish(&task_api, &created).await;
    app.wait_for_entries(&task_path, 1).await;
    publish(&task_api, &life.update()).await;
    app.wait_for_entries(&task_path, 2).await;
    let due = life.due_soon();
    publish(&scheduler, &due).await;
    app.wait_for_entries(&task_path, 3).await;
    publish(&mailer, &life.notification_sent(due.event_id)).await;
    app.wait_for_entries(&task_path, 4).await;
    publish(&task_api, &life.complete()).await;
    app.wait_for_entries(&task_path, 5).await;
    publish(&task_api, &life.delete()).await;
    let entries = app.wait_for_entries(&task_path, 6).await;

    let expected = [
        "task-created",
        "task-updated",
        "task-due-soon",
        "notification-sent",
        "task-completed",
        "task-deleted",
    ];
    assert_eq!(types(&entries), expected);
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
    assert_eq!(entries[0]["event_id"], created.event_id.to_string());
    assert_eq!(entries[0]["task_version"], 1);
    assert_eq!(entries[5]["task_version"], 4);
    assert_eq!(entries[0]["source"], "task-api");
    assert_eq!(entries[2]["source"], "reminder-scheduler");
    assert_eq!(entries[3]["causation_id"], due.event_id.to_string());
    for pair in entries.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }

    let user_entries = app
        .wait_for_entries(&format!("/audit/users/{}", life.user()), 6)
        .await;
    assert_eq!(types(&user_entries), expected);
    assert_eq!(user_entries[5]["task_id"], life.id().to_string());

    let verified = app.get(&format!("{task_path}/verify")).await;
    assert_eq!(
        verified,
        json!({"trail": format!("trail:task:{}", life.id()), "valid": true, "entries": 6})
    );

    // One JSON line per entry: 6 for the task trail and 6 for the user trail.
    let lines = app.lines.lines();
    assert_eq!(lines.len(), 12);
    for line in &lines {
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["log"], "audit");
        assert!(v["hash"].as_str().unwrap().len() == 64);
    }
}

#[tokio::test]
async fn concurrent_duplicate_deliveries_race_and_one_entry_is_written() {
    let mut settings = settings();
    settings.trail_chunk_size = 3;
    let app = spawn_with(settings).await;
    let life = TaskFixture::new();
    let created = life.created();
    let body = json!({
        "id": created.event_id.to_string(), "source": "task-api", "type": "task-created",
        "specversion": "1.0", "datacontenttype": "application/json", "topic": "task-created",
        "pubsubname": "todo-pubsub", "data": serde_json::to_value(&created).unwrap()
    });
    // Twenty copies at once, straight at the delivery route, as several sidecar replicas
    // redelivering the same message would.
    let posts = (0..20).map(|_| {
        app.client
            .post(app.url("/events/task-created"))
            .header("content-type", "application/cloudevents+json")
            .json(&body)
            .send()
    });
    for response in join_all(posts).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap()["status"], "SUCCESS");
    }
    let entries = app.trail(&format!("/audit/tasks/{}", life.id())).await;
    assert_eq!(entries.len(), 1);
    let users = app.trail(&format!("/audit/users/{}", life.user())).await;
    assert_eq!(users.len(), 1);
}

#[tokio::test]
async fn fifty_concurrent_events_of_one_task_lose_nothing_and_the_chain_verifies() {
    let mut settings = settings();
    // Small chunks, so the burst crosses many chunk boundaries.
    settings.trail_chunk_size = 4;
    let app = spawn_with(settings).await;
    let task_api = app.producer("task-api").await;
    let mut life = TaskFixture::new();
    let envelopes: Vec<_> = (0..50).map(|_| life.update()).collect();
    join_all(envelopes.iter().map(|e| publish(&task_api, e))).await;
    let path = format!("/audit/tasks/{}", life.id());
    let entries = app.wait_for_entries(&path, 50).await;
    assert_eq!(entries.len(), 50);
    let mut ids: Vec<&str> = entries
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    let verified = app.get(&format!("{path}/verify")).await;
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["entries"], 50);
    let user = app
        .get(&format!("/audit/users/{}/verify", life.user()))
        .await;
    assert_eq!(user["entries"], 50);
    // 50 entries in chunks of 4: chunks 0..=12 exist, nothing beyond.
    assert!(
        app.cluster
            .state_of(APP, &format!("trail:task:{}:12", life.id()))
            .await
            .is_some()
    );
    assert!(
        app.cluster
            .state_of(APP, &format!("trail:task:{}:13", life.id()))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn an_event_without_task_or_user_is_dropped_not_retried() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/events/task-created"))
        .json(&json!({"specversion": "1.0", "id": "x1", "type": "task-created", "topic": "task-created",
                      "data": {"event_id": "x1", "event_type": "task-created", "data": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "DROP");
}

#[tokio::test]
async fn the_publisher_is_recorded_as_dapr_reports_it_and_a_forgery_is_marked() {
    let app = spawn_app().await;
    let task_api = app.producer("task-api").await;
    let scheduler = app.producer("reminder-scheduler").await;
    let life = TaskFixture::new();
    let task_path = format!("/audit/tasks/{}", life.id());
    // The envelope says `"source": "task-api"`; the sidecar that published it is
    // reminder-scheduler's.
    publish(&scheduler, &life.created()).await;
    let entries = app.wait_for_entries(&task_path, 1).await;
    assert_eq!(entries[0]["source"], "reminder-scheduler");
    let why = entries[0]["source_mismatch"].as_str().unwrap();
    assert!(
        why.contains("only task-api, audit-logger may publish task-created")
            && why.contains("the envelope claims source `task-api`"),
        "{why}"
    );

    let honest = TaskFixture::new();
    publish(&task_api, &honest.created()).await;
    let path = format!("/audit/tasks/{}", honest.id());
    let entries = app.wait_for_entries(&path, 1).await;
    assert_eq!(entries[0]["source"], "task-api");
    assert!(
        entries[0].get("source_mismatch").is_none(),
        "{}",
        entries[0]
    );
}
