//! Only the app allowed to publish a trigger can make the worker send mail: a `task-created`
//! from reminder-scheduler's sidecar (or a `task-due-soon` from task-api's) is dropped with no
//! email and no announcement, while a replay by the audit-logger is mailed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use service_testing::{counter, eventually};
use support::{WAIT, spawn_app, task_created, task_due_soon};

const DEAD_LETTERS: &str = "email-worker-dead-letters";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_from_an_app_not_allowed_to_publish_it_is_dropped_without_mail() {
    let (app, sink) = spawn_app().await;
    let forged = task_created(
        "victim@example.com",
        "Reset your password here",
        "evil link",
    );
    app.cluster
        .publish(
            "reminder-scheduler",
            "task-created",
            &serde_json::to_value(&forged).unwrap(),
        )
        .await
        .unwrap();
    let dropped = app
        .cluster
        .wait_for_published(DEAD_LETTERS, 1, WAIT)
        .await
        .unwrap();
    assert_eq!(dropped[0]["source"], "reminder-scheduler");

    let forged_reminder = task_due_soon("victim@example.com", "Pay now");
    app.cluster
        .publish(
            "task-api",
            "task-due-soon",
            &serde_json::to_value(&forged_reminder).unwrap(),
        )
        .await
        .unwrap();
    app.cluster
        .wait_for_published(DEAD_LETTERS, 2, WAIT)
        .await
        .unwrap();

    // A genuine trigger after them is mailed, so the two were judged, not merely slow.
    let genuine = task_created("ann@example.com", "Real task", "");
    app.publish(&genuine).await;
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    let mail = sink.received();
    assert_eq!(mail.len(), 1, "only the genuine trigger is mailed");
    assert_eq!(mail[0].to, ["ann@example.com"]);
    assert!(app.cluster.published("notification-failed").is_empty());
    // Each forgery is judged twice: on delivery, and on its second chance from the dead-letter
    // topic, where it is dropped for good. Neither judgment sends mail (checked above).
    eventually(
        "both forgeries judged on delivery and on their second chance",
        || async {
            let metrics = app.metrics().await;
            let forbidden = counter(
                &metrics,
                "emails_failed_total",
                &[("reason", "forbidden_publisher")],
            );
            assert!(forbidden <= 4.0, "{metrics}");
            (forbidden == 4.0).then_some(())
        },
    )
    .await;
    assert_eq!(sink.received().len(), 1, "no mail from a second chance");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_by_the_audit_logger_is_mailed() {
    let (app, sink) = spawn_app().await;
    let event = task_created("bea@example.com", "Replayed", "");
    app.cluster
        .publish(
            "audit-logger",
            "task-created",
            &serde_json::to_value(&event).unwrap(),
        )
        .await
        .unwrap();
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(sink.received().len(), 1);
    assert!(app.cluster.published(DEAD_LETTERS).is_empty());
    app.stop().await;
}
