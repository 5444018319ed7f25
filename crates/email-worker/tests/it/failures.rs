//! Failures: transient ones are retried until the email goes out once; permanent ones are
//! announced as `notification-failed` and dead-lettered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use service_testing::{counter, free_port};
use support::{
    SmtpSink, WAIT, settings_for, spawn_app, spawn_app_with, task_created, task_due_soon,
};
use uuid::Uuid;

const DEAD_LETTERS: &str = "email-worker-dead-letters";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_is_retried_and_the_email_goes_out_once_it_is_back() {
    let port = free_port();
    let app = spawn_app_with(settings_for(port)).await;
    // (The only test here whose task-due-soon sends fail transiently, so the counter is its own.)
    let event = task_due_soon("fay@example.com", "Call the plumber");
    app.publish(&event).await;

    // Connection refused: the worker answers RETRY (and the sidecar keeps redelivering).
    let retried = || async {
        let metrics = app.metrics().await;
        counter(
            &metrics,
            "emails_retried_total",
            &[("event_type", "task-due-soon"), ("reason", "smtp")],
        )
    };
    let deadline = Instant::now() + WAIT;
    while retried().await < 2.0 {
        assert!(Instant::now() < deadline, "no SMTP retry seen");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(app.cluster.published("notification-sent").is_empty());
    // Each failed attempt releases its claim (between attempts the key is absent).
    let key = format!("email:{}", event.event_id);
    while app.cluster.state_of("email-worker", &key).await.is_some() {
        assert!(Instant::now() < deadline, "the claim is never released");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The server comes up on that port; the next redelivery sends.
    let sink = SmtpSink::start_on(([127, 0, 0, 1], port).into()).unwrap();
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    let mail = sink.received();
    assert_eq!(mail.len(), 1, "exactly once");
    assert_eq!(mail[0].to, ["fay@example.com"]);
    assert!(app.cluster.published(DEAD_LETTERS).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_recipient_is_announced_and_dead_lettered() {
    let (app, sink) = spawn_app().await;
    sink.reject("gone@example.com");
    let event = task_due_soon("gone@example.com", "Renew passport");
    app.publish(&event).await;

    let dead = app
        .cluster
        .wait_for_published(DEAD_LETTERS, 1, WAIT)
        .await
        .unwrap();
    let failed = app
        .cluster
        .wait_for_published("notification-failed", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(
        dead[0]["data"]["event_id"],
        event.event_id.to_string(),
        "the trigger itself"
    );
    let failed = &failed[0]["data"];
    assert_eq!(failed["causation_id"], event.event_id.to_string());
    assert_eq!(failed["correlation_id"], event.correlation_id);
    assert_eq!(failed["data"]["recipient"], "gone@example.com");
    assert_eq!(failed["data"]["trigger_event_type"], "task-due-soon");
    let reason = failed["data"]["reason"].as_str().unwrap();
    assert!(reason.contains("550"), "{reason}");
    assert!(sink.received().is_empty());
    assert!(app.cluster.published("notification-sent").is_empty());
    let metrics = app.metrics().await;
    assert!(
        counter(
            &metrics,
            "emails_failed_total",
            &[("event_type", "task-due-soon"), ("reason", "rejected")]
        ) >= 1.0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_address_never_reaches_smtp() {
    let (app, sink) = spawn_app().await;
    let event = task_created("ann@example.com\r\nRCPT TO:<x@evil.test>", "x", "");
    app.publish(&event).await;
    app.cluster
        .wait_for_published(DEAD_LETTERS, 1, WAIT)
        .await
        .unwrap();
    let failed = app
        .cluster
        .wait_for_published("notification-failed", 1, WAIT)
        .await
        .unwrap();
    assert!(
        failed[0]["data"]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid recipient")
    );
    assert!(sink.received().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_event_is_dead_lettered_and_announced_when_its_ids_are_readable() {
    let (app, sink) = spawn_app().await;
    let (event_id, task_id, user_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let broken = json!({"event_id": event_id, "event_type": "task-created", "schema_version": 1,
        "correlation_id": "c-1", "source": "task-api",
        "data": {"task": {"task_id": task_id, "user_id": user_id, "user_email": "x@example.com", "title": 42}}});
    app.cluster
        .publish("task-api", "task-created", &broken)
        .await
        .unwrap();
    app.cluster
        .wait_for_published(DEAD_LETTERS, 1, WAIT)
        .await
        .unwrap();
    let failed = app
        .cluster
        .wait_for_published("notification-failed", 1, WAIT)
        .await
        .unwrap();
    let failed: &Value = &failed[0]["data"];
    assert_eq!(failed["causation_id"], event_id.to_string());
    assert_eq!(failed["data"]["task_id"], task_id.to_string());
    assert!(
        failed["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("undecodable")
    );

    // Not even an envelope: dead-lettered without an announcement.
    app.cluster
        .publish("task-api", "task-created", &json!({"hello": "world"}))
        .await
        .unwrap();
    app.cluster
        .wait_for_published(DEAD_LETTERS, 2, WAIT)
        .await
        .unwrap();
    // One announcement, by id: the second chance of the first dead letter may announce it again,
    // with the same id (UUID v5 of the trigger), which consumers take as a duplicate.
    let announced: std::collections::BTreeSet<String> = app
        .cluster
        .published("notification-failed")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert!(sink.received().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_policy_a_poison_message_is_dead_lettered_once_and_blocks_nothing() {
    // No Resiliency resource: the sidecar dead-letters at the first failure, as daprd does.
    let resources = support::resources_dir();
    std::fs::remove_file(resources.path().join("resiliency.yaml")).unwrap();
    let sink = SmtpSink::start().unwrap();
    let app = support::spawn_app_on(resources.path(), settings_for(sink.port())).await;
    app.cluster
        .publish("task-api", "task-created", &json!({"hello": "world"}))
        .await
        .unwrap();
    let next = task_created("kim@example.com", "After the poison", "");
    app.publish(&next).await;
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(sink.received().len(), 1);
    // The poison: dropped on its delivery (dead-lettered), then dropped on its second chance,
    // which has no dead-letter topic: one dead letter, never a second.
    let dead = app
        .cluster
        .wait_for_published(DEAD_LETTERS, 1, WAIT)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["data"]["hello"], "world");

    // The topic still flows, and the poison does not come back.
    app.publish(&task_created("kim@example.com", "And another", ""))
        .await;
    app.cluster
        .wait_for_published("notification-sent", 2, WAIT)
        .await
        .unwrap();
    assert_eq!(sink.received().len(), 2);
    assert_eq!(app.cluster.published(DEAD_LETTERS).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_store_failure_is_retried_without_a_duplicate() {
    let (app, sink) = spawn_app().await;
    // The claim's save fails once (500), as when the store is briefly unavailable.
    app.cluster.faults().fail_next_state_ops(1);
    let event = task_created("gil@example.com", "Book flights", "");
    app.publish(&event).await;
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(sink.received().len(), 1);
    let metrics = app.metrics().await;
    assert!(
        counter(&metrics, "emails_retried_total", &[("reason", "state")]) >= 1.0,
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_transport_writes_one_eml_per_email() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(0);
    settings.smtp_url = None;
    settings.mail_dir = Some(dir.path().to_owned());
    let app = spawn_app_with(settings).await;
    assert!(app.handle.starts_with("file transport"), "{}", app.handle);
    let event = task_created("hal@example.com", "Local run", "");
    app.publish(&event).await;
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    assert!(raw.contains("Subject: New task: Local run"), "{raw}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_protects_deliveries() {
    let sink = SmtpSink::start().unwrap();
    let mut settings = settings_for(sink.port());
    settings.common.app_api_token = Some("s3cret-token".into());
    let app = spawn_app_with(settings).await;
    // Without the token: refused.
    let denied = app
        .client
        .get(app.url("/dapr/subscribe"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    // The sidecar sends it: deliveries work.
    app.publish(&task_created("ivy@example.com", "Token", ""))
        .await;
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(sink.received().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_held_by_another_attempt_means_retry_until_it_is_gone() {
    let (app, sink) = spawn_app().await;
    let event = task_created("jo@example.com", "Held", "");
    // Another replica's claim, written the way the worker writes it (first-write, with a TTL).
    let worker_state = dapr_http::DaprClient::new(dapr_http::DaprSettings::with_endpoint(
        app.sidecar.http_endpoint(),
    ))
    .unwrap();
    let key = format!("email:{}", event.event_id);
    let claim = json!({"status": "sending", "claim_id": Uuid::new_v4(),
        "updated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)});
    let item = dapr_http::SaveItem::new(key.clone(), &claim)
        .unwrap()
        .first_write()
        .ttl(Duration::from_secs(600));
    worker_state
        .save_state("todo-state", &[item])
        .await
        .unwrap();

    app.publish(&event).await;
    let deadline = Instant::now() + WAIT;
    while counter(
        &app.metrics().await,
        "emails_retried_total",
        &[("reason", "in_flight")],
    ) < 2.0
    {
        assert!(Instant::now() < deadline, "no in-flight retry seen");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        sink.received().is_empty(),
        "nothing sent while the claim is held"
    );

    // The other attempt gives up its claim: the next redelivery sends.
    let held = worker_state
        .get_state::<Value>("todo-state", &key)
        .await
        .unwrap()
        .unwrap();
    worker_state
        .delete_state("todo-state", &key, held.etag.as_deref())
        .await
        .unwrap();
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(sink.received().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_4xx_is_retried_until_accepted() {
    let (app, sink) = spawn_app().await;
    sink.tempfail("kim@example.com", 3);
    app.publish(&task_created("kim@example.com", "Greylisted", ""))
        .await;
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(
        sink.tempfails_left("kim@example.com"),
        0,
        "three 451s were answered first"
    );
    assert_eq!(sink.received().len(), 1);
    assert!(app.cluster.published("notification-failed").is_empty());
    assert!(app.cluster.published(DEAD_LETTERS).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_outlived_its_ttl_is_taken_over_and_sent_once() {
    let (app, sink) = spawn_app().await;
    let event = task_created("kim@example.com", "Abandoned", "");
    // A claim whose expiry was lost (the writer died between the write and the EXPIRE): still
    // `sending`, claimed long ago, no TTL.
    let worker_state = dapr_http::DaprClient::new(dapr_http::DaprSettings::with_endpoint(
        app.sidecar.http_endpoint(),
    ))
    .unwrap();
    let key = format!("email:{}", event.event_id);
    let long_ago = chrono::Utc::now() - chrono::Duration::hours(2);
    let claim = json!({"status": "sending", "claim_id": Uuid::new_v4(),
        "updated_at": long_ago.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)});
    let item = dapr_http::SaveItem::new(key.clone(), &claim)
        .unwrap()
        .first_write();
    worker_state
        .save_state("todo-state", &[item])
        .await
        .unwrap();

    app.publish(&event).await;
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(sink.received().len(), 1, "exactly one email");
    let mark = worker_state
        .get_state::<Value>("todo-state", &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mark.value["status"], "sent");
    app.stop().await;
}
