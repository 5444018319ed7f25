//! Dead letters: a subscriber drops an event, its sidecar dead-letters it, the audit-logger
//! stores it with the reason email-worker reported, and an administrator replays it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dapr_http::{DaprClient, DaprSettings, Event, Outcome, Subscriptions};
use events::TaskCreated;
use serde_json::Value;
use support::*;
use tokio::net::TcpListener;

/// A stand-in email-worker: the first delivery of each event fails for good (it publishes
/// `notification-failed` when the task title says so, then answers DROP, as the real one does);
/// later deliveries (a replay) succeed.
#[derive(Clone)]
struct Worker {
    dapr: DaprClient,
    seen: Arc<Mutex<Vec<String>>>,
    failed_once: Arc<Mutex<HashSet<String>>>,
}

async fn on_created(worker: Worker, event: Event<TaskCreated>) -> Outcome {
    let id = event.envelope.event_id.to_string();
    worker.seen.lock().unwrap().push(id.clone());
    if !worker.failed_once.lock().unwrap().insert(id) {
        return Outcome::Success;
    }
    if event.envelope.data.task.title.contains("report-first") {
        let mut life = TaskFixture::new();
        life.snapshot = event.envelope.data.task.clone();
        let failed = life.notification_failed(event.envelope.event_id, "550 mailbox unavailable");
        worker
            .dapr
            .publish(events::PUBSUB_NAME, &failed)
            .await
            .unwrap();
    }
    Outcome::Drop("recipient rejected".into())
}

async fn start_worker(app: &TestApp) -> Worker {
    let port = free_port();
    let sidecar = app
        .cluster
        .sidecar(events::apps::EMAIL_WORKER)
        .app_port(Some(port))
        .start()
        .await
        .unwrap();
    let worker = Worker {
        dapr: DaprClient::new(DaprSettings::with_endpoint(sidecar.http_endpoint())).unwrap(),
        seen: Arc::default(),
        failed_once: Arc::default(),
    };
    let router = Subscriptions::new(events::PUBSUB_NAME)
        .dead_letter_topic(events::dead_letter_topic(events::apps::EMAIL_WORKER))
        .on::<TaskCreated, _, _>(on_created)
        .router(worker.clone());
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    assert!(sidecar.wait_ready(DEADLINE).await);
    std::mem::forget(sidecar);
    worker
}

async fn wait_for_dead_letter(app: &TestApp, event_id: &str, with_reason: bool) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let page = app.get("/audit/dead-letters?limit=100").await;
        let found = page["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["event_id"] == event_id)
            .cloned();
        if let Some(d) = found
            && (!with_reason || d["reason"].is_string())
        {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter {event_id}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_dropped_event_is_stored_with_its_reason_and_replays_to_its_topic() {
    let app = spawn_app().await;
    let worker = start_worker(&app).await;
    let task_api = app.producer("task-api").await;
    let mut life = TaskFixture::new();
    life.snapshot.title = "report-first".into();
    let created = life.created();
    let id = created.event_id.to_string();
    publish(&task_api, &created).await;

    // The sidecar publishes the original CloudEvent to email-worker-dead-letters.
    let dlq = app
        .cluster
        .wait_for_published("email-worker-dead-letters", 1, DEADLINE)
        .await
        .unwrap();
    assert_eq!(dlq[0]["topic"], "task-created");
    let dead = wait_for_dead_letter(&app, &id, true).await;
    assert_eq!(dead["original_topic"], "task-created");
    assert_eq!(dead["event_type"], "task-created");
    assert_eq!(dead["dropped_by"][0]["app_id"], "email-worker");
    assert_eq!(
        dead["dropped_by"][0]["dead_letter_topic"],
        "email-worker-dead-letters"
    );
    assert_eq!(dead["reason"], "550 mailbox unavailable");
    assert_eq!(dead["status"], "pending");
    assert_eq!(dead["task_id"], life.id().to_string());

    // Replay: the same CloudEvent id and type on the original topic.
    let response = app
        .client
        .post(app.url(&format!("/audit/dead-letters/{id}/replay")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let replayed: Value = response.json().await.unwrap();
    assert_eq!(replayed["status"], "replayed");
    assert_eq!(replayed["replays"].as_array().unwrap().len(), 1);
    let published = app
        .cluster
        .wait_for_published("task-created", 2, DEADLINE)
        .await
        .unwrap();
    assert_eq!(published[1]["id"], id.as_str());
    assert_eq!(published[1]["type"], "task-created");
    assert_eq!(published[1]["data"]["event_id"], id.as_str());
    assert_eq!(published[1]["data"], published[0]["data"]);
    // The worker gets it again, and this time takes it.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while worker
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| **s == id)
        .count()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay never reached the worker"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The task trail: the event once (the replay is a duplicate of it), the failure report, the
    // dead letter and the replay.
    let path = format!("/audit/tasks/{}", life.id());
    let entries = app.wait_for_entries(&path, 4).await;
    let kinds: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["event_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(entries.len(), 4, "{kinds:?}");
    assert!(kinds.contains(&("event", "task-created")));
    assert!(kinds.contains(&("event", "notification-failed")));
    assert!(kinds.contains(&("dead_letter", "task-created")));
    assert_eq!(kinds[3], ("replay", "task-created"));
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["event_id"] == id.as_str())
            .count(),
        3
    );
    let verified = app.get(&format!("{path}/verify")).await;
    assert_eq!(verified["valid"], true);
    let listed = wait_for_dead_letter(&app, &id, true).await;
    assert_eq!(listed["status"], "replayed");
}

#[tokio::test]
async fn a_reason_reported_after_the_dead_letter_is_joined_too() {
    let app = spawn_app().await;
    let _worker = start_worker(&app).await;
    let task_api = app.producer("task-api").await;
    let mailer = app.producer("email-worker").await;
    let life = TaskFixture::new();
    let created = life.created();
    let id = created.event_id.to_string();
    publish(&task_api, &created).await;
    let dead = wait_for_dead_letter(&app, &id, false).await;
    assert!(dead["reason"].is_null(), "{dead}");
    publish(
        &mailer,
        &life.notification_failed(created.event_id, "SMTP timeout"),
    )
    .await;
    let dead = wait_for_dead_letter(&app, &id, true).await;
    assert_eq!(dead["reason"], "SMTP timeout");
    // The stored record itself comes to carry it, not only the listing. The listing fills a
    // missing reason from the reason's own key, which is saved before the record is updated,
    // so the record may follow a moment later.
    let key = format!("dead-letter:{id}");
    service_testing::eventually("the reason in the stored dead letter", || async {
        let stored = app.cluster.state_of(APP, &key).await?;
        (stored["reason"] == "SMTP timeout").then_some(())
    })
    .await;
}

#[tokio::test]
async fn replaying_an_unknown_dead_letter_is_a_404_problem() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/audit/dead-letters/nope/replay"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}
