//! A first deployment on Redis Streams: the scheduler's consumer group is created after the task
//! topics already hold days of events (a new Redis Streams group reads the stream from its
//! start, as a new Kafka group does with `initialOffset: oldest`). Due dates are judged against
//! the clock, not the event's age: a replayed task due in the future is reminded as usual, one
//! whose due date is long past only when `REMIND_OVERDUE` says so. The same on Kafka.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::Utc;
use events::{Envelope, EventPayload};
use reminder_scheduler::Settings;
use support::redis::{RedisServer, kafka_broker};
use support::{ReplicaExt as _, Task, World, hours, minutes, settings};

/// `envelope`, stamped `days` days ago.
fn days_ago<T: EventPayload>(mut envelope: Envelope<T>, days: i64) -> Envelope<T> {
    envelope.timestamp = Utc::now() - chrono::Duration::days(days);
    envelope
}

#[tokio::test]
async fn a_first_deployment_reminds_future_tasks_and_no_past_one() {
    let redis = RedisServer::start();
    reminds_future_tasks_and_no_past_one(redis.streams(&[])).await;
}

/// The same on production's Kafka component, whose new consumer group starts at the oldest
/// retained record (`initialOffset: oldest`).
#[tokio::test]
async fn on_kafka_a_first_deployment_reminds_future_tasks_and_no_past_one() {
    let redis = RedisServer::start();
    let broker = kafka_broker();
    reminds_future_tasks_and_no_past_one(redis.kafka(&broker, &[])).await;
}

async fn reminds_future_tasks_and_no_past_one(resources: PathBuf) {
    let world = World::from_resources(resources).await;

    // The history, published before the scheduler (and its group) exists.
    let long_past = Task::new().due(Some(world.t0 - hours(5 * 24)));
    let done = Task::new().due(Some(world.t0 - hours(4 * 24)));
    let soon = Task::new().due(Some(world.t0 + minutes(30)));
    let later = Task::new().due(Some(world.t0 + hours(3)));
    world.publish(&days_ago(long_past.created(), 6)).await;
    world.publish(&days_ago(done.created(), 6)).await;
    world
        .publish(&days_ago(done.at(2, done.snapshot.due_date).completed(), 4))
        .await;
    world.publish(&days_ago(soon.created(), 2)).await;
    world.publish(&days_ago(later.created(), 3)).await;

    let replica = world.replica().await;
    replica.wait_for_lease().await;
    for (task, version) in [(&long_past, 1), (&done, 2), (&soon, 1), (&later, 1)] {
        world.wait_for_version(task.id(), version).await;
    }
    // The task due in half an hour is inside the window: reminded at once.
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.data.task_id, soon.id());
    replica.scans(3).await;
    assert_eq!(world.reminders().len(), 1, "a past task was reminded");

    // The later one when its window opens; the past ones never.
    world.advance(hours(2) + minutes(1));
    world.wait_for_reminders(2).await;
    world.advance(hours(2));
    replica.scans(3).await;
    let reminded: BTreeSet<_> = world
        .reminders()
        .iter()
        .map(|r| r.envelope.data.task_id)
        .collect();
    assert_eq!(reminded, BTreeSet::from([soon.id(), later.id()]));
    assert_eq!(world.reminders().len(), 2);
    replica.stop().await;
}

#[tokio::test]
async fn with_remind_overdue_a_replayed_overdue_task_is_reminded_once() {
    let redis = RedisServer::start();
    let world = World::from_resources(redis.streams(&[])).await;
    let overdue = Task::new().due(Some(world.t0 - hours(5 * 24)));
    world.publish(&days_ago(overdue.created(), 6)).await;

    let settings = Settings {
        remind_overdue: true,
        ..settings()
    };
    let replica = world.replica_with(settings).await;
    replica.wait_for_lease().await;
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.data.task_id, overdue.id());
    assert_eq!(
        reminders[0].envelope.data.due_date,
        world.t0 - hours(5 * 24)
    );
    replica.scans(3).await;
    assert_eq!(world.reminders().len(), 1);
    replica.stop().await;
}
