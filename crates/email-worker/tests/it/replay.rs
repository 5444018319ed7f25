//! A first deployment: the worker's consumer group is created after the topics already hold
//! days of events (a new Redis Streams group reads the stream from its start, as a new Kafka
//! group does with `initialOffset: oldest`). Triggers older than `MAX_EVENT_AGE` are
//! acknowledged without an email; recent ones are mailed as usual.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::{Duration, Instant};

use chrono::Utc;
use service_testing::{Cluster, Producers, RedisServer, counter};
use support::streams::ConsumerGroups as _;
use support::{SmtpSink, WAIT, settings_for, spawn_app_on, task_created, task_due_soon};

const OLD_CREATED: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_deployment_does_not_mail_the_retained_history() {
    let redis = RedisServer::start();
    let components = redis.streams(&[]);
    let sink = SmtpSink::start().unwrap();
    let mut settings = settings_for(sink.port());
    settings.max_event_age = Duration::from_secs(6 * 3600);

    // The topics' history, published before the worker (and so its consumer group) exists:
    // tasks created days ago, a reminder from yesterday, and one task created a minute ago; each
    // through a sidecar of its producer (task-api, reminder-scheduler).
    let cluster = Cluster::from_resources(&[&components]).await.unwrap();
    let producers = Producers::on(&cluster);
    for i in 0..OLD_CREATED {
        let mut old = task_created(&format!("old{i}@example.com"), "Last week's task", "");
        old.timestamp = Utc::now() - chrono::Duration::days(6) + chrono::Duration::hours(i as i64);
        producers.publish(&old).await;
    }
    let mut old_reminder = task_due_soon("reminded@example.com", "Yesterday's deadline");
    old_reminder.timestamp = Utc::now() - chrono::Duration::days(1);
    producers.publish(&old_reminder).await;
    let mut recent = task_created("new@example.com", "Today's task", "");
    recent.timestamp = Utc::now() - chrono::Duration::minutes(1);
    producers.publish(&recent).await;
    cluster.shutdown().await;

    let app = spawn_app_on(components, settings).await;
    // Until the worker's group has read both streams to their end and acknowledged everything.
    let deadline = Instant::now() + WAIT;
    while !(redis.group_done("task-created", "email-worker")
        && redis.group_done("task-due-soon", "email-worker"))
    {
        assert!(Instant::now() < deadline, "the history was not consumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = app.metrics().await;
    app.stop().await;

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
