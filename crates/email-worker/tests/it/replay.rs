//! A first deployment: the worker's consumer group is created after the topics already hold
//! days of events (a new Redis Streams group reads the stream from its start, as a new Kafka
//! group does with `initialOffset: oldest`). Triggers older than `MAX_EVENT_AGE` are
//! acknowledged without an email; recent ones are mailed as usual. The same on Kafka.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use service_testing::{Cluster, Producers, RedisServer, counter, kafka_broker};
use support::streams::ConsumerGroups as _;
use support::{SmtpSink, WAIT, settings_for, spawn_app_on, task_created, task_due_soon};

const OLD_CREATED: usize = 5;

/// The topics' history, published before the worker (and so its consumer group) exists: tasks
/// created days ago, a reminder from yesterday, and one task created a minute ago; each through
/// a sidecar of its producer (task-api, reminder-scheduler).
async fn publish_history(components: &Path) {
    let cluster = Cluster::from_resources(&[components]).await.unwrap();
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
}

fn settings(sink: &SmtpSink) -> email_worker::Settings {
    let mut settings = settings_for(sink.port());
    settings.max_event_age = Duration::from_secs(6 * 3600);
    settings
}

fn skipped(metrics: &str, kind: &str) -> f64 {
    counter(
        metrics,
        "emails_skipped_total",
        &[("event_type", kind), ("reason", "too_old")],
    )
}

/// Only the recent task was mailed, and every old trigger was counted as skipped.
fn assert_only_the_recent_task_mailed(sink: &SmtpSink, metrics: &str) {
    let mail = sink.received();
    let recipients: Vec<_> = mail.iter().flat_map(|m| m.to.clone()).collect();
    assert_eq!(recipients, ["new@example.com"]);
    assert!(
        skipped(metrics, "task-created") >= OLD_CREATED as f64,
        "{metrics}"
    );
    assert!(skipped(metrics, "task-due-soon") >= 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_deployment_does_not_mail_the_retained_history() {
    let redis = RedisServer::start();
    let components = redis.streams(&[]);
    let sink = SmtpSink::start().unwrap();
    publish_history(&components).await;

    let app = spawn_app_on(components, settings(&sink)).await;
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
    assert_only_the_recent_task_mailed(&sink, &metrics);
}

/// The same on production's Kafka component: the worker's new consumer group starts at the
/// oldest retained record (`initialOffset: oldest`) of every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_a_first_deployment_does_not_mail_the_retained_history() {
    let redis = RedisServer::start();
    let broker = kafka_broker();
    let components = redis.kafka(&broker, &[]);
    let sink = SmtpSink::start().unwrap();
    publish_history(&components).await;

    let app = spawn_app_on(components, settings(&sink)).await;
    // Until every trigger of the history has been judged: the recent one mailed, the old ones
    // counted as skipped (Kafka has no pending list to watch, the counters say it all).
    let deadline = Instant::now() + WAIT;
    let metrics = loop {
        let metrics = app.metrics().await;
        if skipped(&metrics, "task-created") >= OLD_CREATED as f64
            && skipped(&metrics, "task-due-soon") >= 1.0
            && !sink.received().is_empty()
        {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the history was not consumed: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    app.stop().await;
    assert_only_the_recent_task_mailed(&sink, &metrics);
}
