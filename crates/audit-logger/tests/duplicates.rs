//! At-least-once delivery: the same event published twice, and every delivery made twice by
//! the sidecar, still gives one entry per event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "it/support/mod.rs"]
mod support;

use serde_json::Value;
use support::*;

fn types(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_same_event_published_twice_and_delivered_twice_is_recorded_once() {
    let app = spawn_app().await;
    let task_api = app.producer("task-api").await;
    let mut life = TaskFixture::new();
    let path = format!("/audit/tasks/{}", life.id());
    app.cluster.faults().duplicate_deliveries(true);
    let created = life.created();
    publish(&task_api, &created).await;
    publish(&task_api, &created).await;
    let updated = life.update();
    publish(&task_api, &updated).await;
    app.wait_for_entries(&path, 2).await;
    // A marker event published last: once it is in, every earlier delivery was handled (a
    // duplicate delivery follows its original synchronously).
    let marker = life.complete();
    publish(&task_api, &marker).await;
    let entries = app.wait_for_entries(&path, 3).await;
    // Deliveries: created 2x2, updated 2, completed 2; all but one per event are duplicates,
    // each seen in the task and the user trail: (3 + 1 + 1) * 2. The metrics recorder is
    // process-wide, so this test has a binary of its own: the counter is this test's alone.
    let duplicates = wait_for_metric(&app, "audit_duplicates_total", 10.0).await;
    assert_eq!(duplicates, 10.0);
    let entries_again = app.trail(&path).await;
    assert_eq!(entries_again.len(), 3, "{entries_again:#?}");
    assert_eq!(
        types(&entries),
        ["task-created", "task-updated", "task-completed"]
    );
    assert_eq!(app.lines.lines().len(), 6);
}

/// Waits until the sum of a counter over all labels is at least `min`; returns the sum.
async fn wait_for_metric(app: &TestApp, name: &str, min: f64) -> f64 {
    service_testing::eventually(format!("{name} to reach {min}"), || async {
        let total = service_testing::counter(&app.metrics().await, name, &[]);
        (total >= min).then_some(total)
    })
    .await
}
