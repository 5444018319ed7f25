//! A first deployment: the worker's consumer group is created after the topics already hold
//! days of events (a new Redis Streams group reads the stream from its start, as a new Kafka
//! group does with `initialOffset: oldest`). Triggers older than `MAX_EVENT_AGE` are
//! acknowledged without an email; recent ones are mailed as usual.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::redis_server::RedisServer;
use crate::support;

use std::time::{Duration, Instant};

use chrono::Utc;
use support::{SmtpSink, WAIT, counter, settings_for, spawn_app_on, task_created, task_due_soon};

const OLD_CREATED: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_deployment_does_not_mail_the_retained_history() {
    let redis = RedisServer::start();
    let components = redis.components(&[]);
    let sink = SmtpSink::start().unwrap();
    let mut settings = settings_for(sink.port());
    settings.max_event_age = Duration::from_secs(6 * 3600);

    // The topics' history, published before the worker (and so its consumer group) exists:
    // tasks created days ago, a reminder from yesterday, and one task created a minute ago.
    let producers = service_testing::Cluster::from_resources(&[components.path()])
        .await
        .unwrap();
    let publish = |sidecar: service_testing::TestSidecar| {
        dapr_http::DaprClient::new(dapr_http::DaprSettings::with_endpoint(
            sidecar.http_endpoint(),
        ))
        .unwrap()
    };
    let task_api = publish(producers.sidecar("task-api").start().await.unwrap());
    let scheduler = publish(
        producers
            .sidecar("reminder-scheduler")
            .start()
            .await
            .unwrap(),
    );
    for i in 0..OLD_CREATED {
        let mut old = task_created(&format!("old{i}@example.com"), "Last week's task", "");
        old.timestamp = Utc::now() - chrono::Duration::days(6) + chrono::Duration::hours(i as i64);
        task_api.publish(events::PUBSUB_NAME, &old).await.unwrap();
    }
    let mut old_reminder = task_due_soon("reminded@example.com", "Yesterday's deadline");
    old_reminder.timestamp = Utc::now() - chrono::Duration::days(1);
    scheduler
        .publish(events::PUBSUB_NAME, &old_reminder)
        .await
        .unwrap();
    let mut recent = task_created("new@example.com", "Today's task", "");
    recent.timestamp = Utc::now() - chrono::Duration::minutes(1);
    task_api
        .publish(events::PUBSUB_NAME, &recent)
        .await
        .unwrap();
    producers.shutdown().await;

    let app = spawn_app_on(components, sink.port(), settings).await;
    // Until the worker's group has read both streams to their end and acknowledged everything.
    let deadline = Instant::now() + WAIT;
    while !(redis.group_done("task-created", "email-worker")
        && redis.group_done("task-due-soon", "email-worker"))
    {
        assert!(Instant::now() < deadline, "the history was not consumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = app.metrics().await;
    app.shutdown().await;

    let mail = sink.received();
    let recipients: Vec<_> = mail.iter().flat_map(|m| m.to.clone()).collect();
    assert_eq!(recipients, ["new@example.com"]);
    let skipped = |kind: &str| {
        counter(
            &metrics,
            "emails_skipped_total",
            &[("event_type", kind), ("reason", "too_old")],
        )
    };
    assert!(skipped("task-created") >= OLD_CREATED as f64, "{metrics}");
    assert!(skipped("task-due-soon") >= 1.0, "{metrics}");
}
