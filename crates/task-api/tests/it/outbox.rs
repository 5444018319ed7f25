//! The outbox under failing and partially applied transactions: no event for a change that did
//! not commit, exactly one for a change that did.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use dapr_http::{DaprClient, DaprSettings};
use serde_json::{Value, json};
use support::{TaskApi as _, TxnFault, problem, spawn_proxied};
use task_api::outbox::Outbox;
use task_api::repository::TaskRepository;

async fn outbox_entries(app: &support::TestApp) -> Vec<Value> {
    let mut entries = Vec::new();
    for key in app.cluster.state_keys("task-api").await {
        if !key.starts_with("outbox:") {
            continue;
        }
        if let Some(shard) = app.cluster.state_of("task-api", &key).await {
            entries.extend(shard["entries"].as_array().cloned().unwrap_or_default());
        }
    }
    entries
}

fn relay_for(app: &support::TestApp) -> Outbox {
    let dapr = DaprClient::new(DaprSettings::with_endpoint(app.sidecar.http_endpoint())).unwrap();
    let repository = TaskRepository::new(
        dapr.clone(),
        "todo-state".into(),
        app.settings.tombstone_ttl,
        app.settings.conflict_retries,
    );
    Outbox::new(
        repository,
        dapr,
        "todo-pubsub".into(),
        app.settings.outbox_shards,
    )
}

#[tokio::test]
async fn a_failed_transaction_is_a_problem_and_produces_no_event() {
    let app = spawn_proxied(&[]).await;
    let user = app.user();
    app.proxy
        .as_ref()
        .unwrap()
        .fault_next_transaction(TxnFault::Fail);
    let response = app.create(&user, json!({"title": "doomed"})).await;
    let body = problem(response, 503, "unavailable").await;
    assert!(body.get("errors").is_none());
    let keys = app.cluster.state_keys("task-api").await;
    assert!(!keys.iter().any(|k| k.starts_with("task:")), "{keys:?}");
    assert!(outbox_entries(&app).await.is_empty());
    // Even a relay pass that ignores the grace period finds nothing to publish.
    let report = relay_for(&app).relay_once(Duration::ZERO).await.unwrap();
    assert_eq!(report.published, 0);
    assert!(app.cluster.published("task-created").is_empty());
    // The store works again afterwards.
    app.create_ok(&user, "fine").await;
    assert_eq!(app.cluster.published("task-created").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn state_failures_from_the_sidecar_are_problems_without_events() {
    let app = spawn_proxied(&[]).await;
    let user = app.user();
    app.cluster.faults().fail_next_state_ops(50);
    let response = app.create(&user, json!({"title": "doomed"})).await;
    let status = response.status().as_u16();
    assert!(status == 503 || status == 500, "{status}");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    app.cluster.faults().reset();
    let keys = app.cluster.state_keys("task-api").await;
    assert!(!keys.iter().any(|k| k.starts_with("task:")), "{keys:?}");
    assert!(app.cluster.published("task-created").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_outbox_entry_of_an_uncommitted_change_is_never_published() {
    let app = spawn_proxied(&[("OUTBOX_GRACE_PERIOD", "300ms")]).await;
    let user = app.user();
    // The counter is the process's, shared with the tests running beside this one.
    let discarded = || async {
        service_testing::metrics::counter(
            &app.metrics().await,
            "task_api_outbox_discarded_total",
            &[],
        )
    };
    let discarded_before = discarded().await;
    // Like Redis after a failed etag check: the outbox append is applied, the task write is not.
    app.proxy
        .as_ref()
        .unwrap()
        .fault_next_transaction(TxnFault::ApplyOnly("outbox:"));
    let task = app.create_ok(&user, "retried").await;
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["version"], 1);
    let committed = app.wait_events("task-created", &id, 1).await;
    let committed_id = committed[0]["id"].as_str().unwrap().to_owned();
    // The failed attempt left its entry behind (unless the relay already took it out).
    let phantom: Vec<Value> = outbox_entries(&app)
        .await
        .into_iter()
        .filter(|e| e["event_id"] != committed_id.as_str())
        .collect();
    assert!(phantom.len() <= 1, "{phantom:?}");

    // The writer, which saw its transaction fail, discards it and removes it.
    service_testing::eventually("the phantom entry discarded", || async {
        let discarded = discarded().await - discarded_before;
        let only_committed = outbox_entries(&app)
            .await
            .iter()
            .all(|e| e["event_id"] == committed_id.as_str());
        (discarded >= 1.0 && only_committed).then_some(())
    })
    .await;
    let ids: BTreeSet<String> = app
        .events_of("task-created", &id)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, BTreeSet::from([committed_id]), "no phantom");
    app.stop().await;
}

#[tokio::test]
async fn a_committed_change_whose_outbox_write_failed_still_publishes_once() {
    let app = spawn_proxied(&[]).await;
    let user = app.user();
    let id = app.create_ok(&user, "partial").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The reverse half of a Redis partial transaction: the task and index are written, the
    // outbox append is not, and the sidecar reports failure.
    app.proxy
        .as_ref()
        .unwrap()
        .fault_next_transaction(TxnFault::Skip("outbox:"));
    let response = app
        .patch(&user, &id, json!({"title": "changed"}), Some("\"1\""))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let events = app.wait_events("task-updated", &id, 1).await;
    assert_eq!(events[0]["data"]["data"]["task"]["version"], 2);
    // Nothing double-applied: still version 2, one updated event.
    let current: Value = app
        .get(&user, &format!("/api/tasks/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(current["version"], 2);
    assert_eq!(app.events_of("task-updated", &id).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn publish_carries_cloud_event_id_type_and_partition_key() {
    let app = spawn_proxied(&[]).await;
    let user = app.user();
    let id = app.create_ok(&user, "routed").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = app.wait_events("task-created", &id, 1).await.remove(0);
    let event_id = event["id"].as_str().unwrap();
    let publishes: Vec<String> = app
        .proxy
        .as_ref()
        .unwrap()
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("POST /v1.0/publish/todo-pubsub/task-created"))
        .collect();
    assert_eq!(publishes.len(), 1, "{publishes:?}");
    let line = &publishes[0];
    assert!(
        line.contains(&format!("metadata.partitionKey={id}")),
        "{line}"
    );
    assert!(
        line.contains(&format!("metadata.cloudevent.id={event_id}")),
        "{line}"
    );
    assert!(
        line.contains("metadata.cloudevent.type=task-created"),
        "{line}"
    );
    app.stop().await;
}

#[tokio::test]
async fn relay_publishes_an_entry_whose_publish_failed() {
    let app = spawn_proxied(&[("OUTBOX_GRACE_PERIOD", "300ms")]).await;
    let user = app.user();
    app.cluster.faults().fail_next_publishes(100);
    // The publish after the commit fails (after the client's own retries); the request succeeds.
    let id = app.create_ok(&user, "late").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(app.events_of("task-created", &id).is_empty());
    app.cluster.faults().reset();
    let events = app.wait_events("task-created", &id, 1).await;
    assert_eq!(events[0]["data"]["data"]["task"]["version"], 1);
    app.stop().await;
}
