//! A first deployment: the audit-logger's consumer group is created after the topics already hold
//! days of events (a new Redis Streams group reads the stream from its start, as a new Kafka
//! group does with `initialOffset: oldest`). Old events are history too: every one is recorded,
//! with the time it happened. The same on Kafka.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{Duration, Utc};
use events::{Envelope, EventPayload};
use serde_json::Value;
use service_testing::{Cluster, Producers, RedisServer, kafka_broker};
use support::{TaskFixture, settings, spawn_on};

/// `envelope`, stamped `days` days ago.
fn days_ago<T: EventPayload>(mut envelope: Envelope<T>, days: i64) -> Envelope<T> {
    envelope.timestamp = Utc::now() - Duration::days(days);
    envelope
}

fn stamp<T: EventPayload>(envelope: &Envelope<T>) -> (String, Value) {
    let json = serde_json::to_value(envelope).unwrap();
    (envelope.event_id.to_string(), json["timestamp"].clone())
}

#[tokio::test]
async fn a_first_deployment_records_the_retained_history() {
    let redis = RedisServer::start();
    records_the_retained_history(redis.streams(&[])).await;
}

/// The same on production's Kafka component, whose new consumer group starts at the oldest
/// retained record (`initialOffset: oldest`).
#[tokio::test]
async fn on_kafka_a_first_deployment_records_the_retained_history() {
    let redis = RedisServer::start();
    let broker = kafka_broker();
    records_the_retained_history(redis.kafka(&broker, &[])).await;
}

async fn records_the_retained_history(resources: PathBuf) {
    let cluster = Cluster::from_resources(&[resources]).await.unwrap();
    // Each event through a sidecar of its producer (task-api, reminder-scheduler, email-worker).
    let producers = Producers::on(&cluster);

    // Last week's life of one task, published before the audit-logger (and its group) exists.
    let mut life = TaskFixture::new();
    let created = days_ago(life.created(), 6);
    let due_soon = days_ago(life.due_soon(), 5);
    let sent = days_ago(life.notification_sent(due_soon.event_id), 5);
    let completed = days_ago(life.complete(), 4);
    producers.publish(&created).await;
    producers.publish(&due_soon).await;
    producers.publish(&sent).await;
    producers.publish(&completed).await;
    let expected: BTreeMap<String, Value> = [
        stamp(&created),
        stamp(&due_soon),
        stamp(&sent),
        stamp(&completed),
    ]
    .into_iter()
    .collect();

    let app = spawn_on(cluster, settings()).await;
    for trail in [
        format!("/audit/tasks/{}", life.id()),
        format!("/audit/users/{}", life.user()),
    ] {
        // Neither Redis Streams nor Kafka keeps an order across topics: the trail's order is
        // not checked.
        let entries = app.wait_for_entries(&trail, expected.len()).await;
        let recorded: BTreeMap<String, Value> = entries
            .iter()
            .map(|e| {
                (
                    e["event_id"].as_str().unwrap().to_owned(),
                    e["occurred_at"].clone(),
                )
            })
            .collect();
        assert_eq!(recorded, expected, "{trail}");
        let verified = app.get(&format!("{trail}/verify")).await;
        assert_eq!(verified["valid"], true, "{verified}");
    }
}
