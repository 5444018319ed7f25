//! The outbox's windows for losing an event without any crash: a committed change whose event
//! could not be recorded at once (or at all), an event older than its task's recorded history, an entry the
//! relay cannot check, and a shard that grows while the broker takes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use dapr_http::{DaprClient, DaprSettings, SaveItem};
use serde_json::{Value, json};
use service_testing::eventually;
use support::{TaskApi as _, TxnFault, problem, spawn_proxied};
use task_api::outbox::Outbox;
use task_api::repository::TaskRepository;

fn client(app: &support::TestApp) -> DaprClient {
    DaprClient::new(DaprSettings::with_endpoint(app.sidecar.http_endpoint())).unwrap()
}

/// A second outbox on the app's store, like another replica's.
fn other_replica(app: &support::TestApp) -> Outbox {
    let dapr = client(app);
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

/// Every outbox shard key with its entries.
async fn shards(app: &support::TestApp) -> Vec<(String, Vec<Value>)> {
    let mut shards = Vec::new();
    for key in app.cluster.state_keys("task-api").await {
        if !key.starts_with("outbox:") {
            continue;
        }
        if let Some(shard) = app.cluster.state_of("task-api", &key).await {
            shards.push((
                key,
                shard["entries"].as_array().cloned().unwrap_or_default(),
            ));
        }
    }
    shards
}

fn versions(events: &[Value]) -> BTreeSet<u64> {
    events
        .iter()
        .map(|e| e["data"]["data"]["task"]["version"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_committed_change_keeps_its_event_when_recording_it_afterwards_fails() {
    let app = spawn_proxied(&[]).await;
    let user = app.user();
    let id = app.create_ok(&user, "partial").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = app.proxy.as_ref().unwrap();
    // The task write applies and the shard write does not (on Redis: another writer moved the
    // shard's etag), then the store refuses the next writes of the shard for a moment.
    proxy.fault_next_transaction(TxnFault::Skip("outbox:"));
    proxy.fail_next_saves("outbox:", 3);
    let response = app
        .patch(&user, &id, json!({"title": "changed"}), Some("\"1\""))
        .await;
    assert_eq!(response.status(), 200, "the change committed");
    assert_eq!(response.headers()["etag"], "\"2\"");
    let events = app.wait_events("task-updated", &id, 1).await;
    assert_eq!(events[0]["data"]["data"]["task"]["version"], 2);
    assert_eq!(app.events_of("task-updated", &id).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_committed_change_is_published_even_when_the_store_keeps_refusing_its_outbox_entry() {
    let app = spawn_proxied(&[]).await;
    let user = app.user();
    let id = app.create_ok(&user, "partial").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = app.proxy.as_ref().unwrap();
    // The task write applies and the entry write does not, and then the store refuses every
    // write of the entry for longer than the writer retries it.
    proxy.fault_next_transaction(TxnFault::Skip("outbox:"));
    proxy.fail_next_saves("outbox:", 1_000);
    let response = app
        .patch(&user, &id, json!({"title": "changed"}), Some("\"1\""))
        .await;
    assert_eq!(response.status(), 200, "the change committed");
    assert_eq!(response.headers()["etag"], "\"2\"");
    let events = app.wait_events("task-updated", &id, 1).await;
    assert_eq!(events[0]["data"]["data"]["task"]["version"], 2);
    assert_eq!(app.events_of("task-updated", &id).len(), 1);
    proxy.fail_next_saves("outbox:", 0);
    app.stop().await;
}

#[tokio::test]
async fn the_relay_publishes_events_older_than_the_tasks_recorded_history() {
    let app = spawn_proxied(&[("OUTBOX_GRACE_PERIOD", "300ms")]).await;
    let user = app.user();
    // The broker is down for a task's creation and its next 70 changes: more than the 64 events
    // the record remembers.
    app.cluster.faults().fail_next_publishes(1_000_000);
    let id = app.create_ok(&user, "busy").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 0..70 {
        let response = app
            .patch(&user, &id, json!({"title": format!("busy {n}")}), None)
            .await;
        assert_eq!(response.status(), 200);
    }
    assert!(app.events_of("task-updated", &id).is_empty());
    app.cluster.faults().reset();
    let events = app.wait_events("task-updated", &id, 70).await;
    assert_eq!(versions(&events), (2..=71).collect::<BTreeSet<u64>>());
    app.wait_events("task-created", &id, 1).await;
    eventually("the outbox drained", || async {
        shards(&app)
            .await
            .iter()
            .all(|(_, entries)| entries.is_empty())
            .then_some(())
    })
    .await;
    assert_eq!(app.events_of("task-updated", &id).len(), 70, "each once");
    app.stop().await;
}

#[tokio::test]
async fn an_entry_the_relay_cannot_check_holds_back_no_other() {
    let app = spawn_proxied(&[]).await;
    let dapr = client(&app);
    // An entry whose task record is unreadable, then one of a task that never existed, in a
    // shard of the layout every version of task-api relays.
    let unreadable = uuid::Uuid::now_v7();
    dapr.save_state(
        "todo-state",
        &[SaveItem::new(format!("task:{unreadable}"), &"not a task record").unwrap()],
    )
    .await
    .unwrap();
    let entry = |task: uuid::Uuid| {
        let event = uuid::Uuid::now_v7();
        json!({"event_id": event, "task_id": task, "version": 1, "topic": "task-created",
               "envelope": {"event_id": event}, "recorded_at": "2020-01-01T00:00:00Z"})
    };
    let phantom = entry(uuid::Uuid::now_v7());
    dapr.save_state(
        "todo-state",
        &[SaveItem::new(
            "outbox:0",
            &json!({"entries": [entry(unreadable), phantom]}),
        )
        .unwrap()],
    )
    .await
    .unwrap();

    let report = other_replica(&app)
        .relay_once(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(
        report.discarded, 1,
        "the entry after the failing one: {report:?}"
    );
    let left = app.cluster.state_of("task-api", "outbox:0").await.unwrap();
    let left = left["entries"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["task_id"], unreadable.to_string().as_str());
    assert!(app.cluster.published("task-created").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_shard_the_broker_does_not_drain_refuses_changes_before_the_request_limit() {
    let app = spawn_proxied(&[("OUTBOX_SHARDS", "1"), ("OUTBOX_GRACE_PERIOD", "300ms")]).await;
    let user = app.user();
    app.cluster.faults().fail_next_publishes(1_000_000);
    let description = "x".repeat(10_000);
    let mut accepted = 0;
    let refusal = loop {
        let response = app
            .create(&user, json!({"title": "big", "description": description}))
            .await;
        if response.status() != 201 {
            break response;
        }
        accepted += 1;
        assert!(accepted < 400, "the shard passed 4 MiB without a refusal");
    };
    let body = problem(refusal, 503, "unavailable").await;
    assert!(
        body["detail"].as_str().unwrap().contains("outbox"),
        "{body}"
    );
    let stored: usize = shards(&app)
        .await
        .iter()
        .map(|(_, entries)| serde_json::to_string(entries).unwrap().len())
        .sum();
    assert!(stored < 2 << 20, "{stored} bytes in the outbox");

    // Once the broker is back, the relay drains the shard and changes are taken again.
    app.cluster.faults().reset();
    app.cluster
        .wait_for_published("task-created", accepted, Duration::from_secs(30))
        .await
        .unwrap();
    eventually("creates accepted again", || async {
        let response = app.create(&user, json!({"title": "after"})).await;
        (response.status() == 201).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_change_whose_transaction_applies_after_a_failure_without_an_answer_is_published() {
    let app = spawn_proxied(&[("OUTBOX_GRACE_PERIOD", "1s")]).await;
    let user = app.user();
    let id = app.create_ok(&user, "late").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = app.proxy.as_ref().unwrap();
    // The sidecar gives up on the transaction without an answer from the store and applies it
    // after the writer's read has looked: the read cannot tell that it did not commit.
    proxy.fault_next_transaction(TxnFault::Late(Duration::from_millis(500)));
    let response = app
        .patch(&user, &id, json!({"title": "changed"}), Some("\"1\""))
        .await;
    assert!(
        response.status().is_server_error(),
        "the outcome was unknown when the request ended"
    );
    let events = app.wait_events("task-updated", &id, 1).await;
    assert_eq!(events[0]["data"]["data"]["task"]["version"], 2);
    app.stop().await;
}

#[tokio::test]
async fn a_committed_change_succeeds_when_its_index_repair_fails() {
    let app = spawn_proxied(&[]).await;
    let user = app.user();
    let id = app.create_ok(&user, "repair").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = app.proxy.as_ref().unwrap();
    // Only the task write applies (the priority changes its index summary too); then the
    // store refuses every write of the index head, so the repair that follows fails.
    proxy.fault_next_transaction(TxnFault::ApplyOnly("task:"));
    proxy.fail_next_saves("user:", 1_000);
    let response = app
        .patch(&user, &id, json!({"priority": "urgent"}), Some("\"1\""))
        .await;
    assert_eq!(response.status(), 200, "the change committed");
    assert_eq!(response.headers()["etag"], "\"2\"");
    let events = app.wait_events("task-updated", &id, 1).await;
    assert_eq!(events[0]["data"]["data"]["task"]["version"], 2);
    assert_eq!(app.events_of("task-updated", &id).len(), 1);
    proxy.fail_next_saves("user:", 0);
    app.stop().await;
}

#[tokio::test]
async fn a_write_slower_than_the_grace_period_is_not_judged_while_it_runs() {
    let app = spawn_proxied(&[
        ("OUTBOX_GRACE_PERIOD", "200ms"),
        ("OUTBOX_RELAY_INTERVAL", "50ms"),
    ])
    .await;
    let user = app.user();
    app.create_ok(&user, "first").await;
    support::wait_projected(&app).await;
    // The create's transaction lands long after the grace period: a relay judging it from its
    // record in between finds no task, discards the entry and forgets the change, which is
    // then never projected into the index.
    app.proxy
        .as_ref()
        .unwrap()
        .fault_next_transaction(TxnFault::Slow(Duration::from_millis(1_500)));
    let id = app.create_ok(&user, "slow").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_events("task-created", &id, 1).await;
    support::wait_projected(&app).await;
    let page: Value = app
        .get(&user, "/api/tasks?limit=10")
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&id.as_str()), "{page}");
}

#[tokio::test]
async fn an_unreadable_index_head_holds_back_no_other_users_projection() {
    let app = spawn_proxied(&[]).await;
    let broken = app.user();
    let heads: Vec<SaveItem> = (0..16)
        .map(|b| SaveItem::new(format!("user:{}:tasks:{b}", broken.id), &"not an index").unwrap())
        .collect();
    client(&app).save_state("todo-state", &heads).await.unwrap();
    // Never projected: its head cannot be read. It must not hold back the next user's change,
    // which the same cleaner pass projects.
    app.create_ok(&broken, "cannot be projected").await;
    let user = app.user();
    let id = app.create_ok(&user, "projected").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let prefix = format!("user:{}:tasks:", user.id);
    eventually("the other user's task in their index", || async {
        for key in app.cluster.state_keys("task-api").await {
            if key.starts_with(&prefix)
                && let Some(head) = app.cluster.state_of("task-api", &key).await
                && head.to_string().contains(&id)
            {
                return Some(());
            }
        }
        None
    })
    .await;
}
