//! Delivery duplicates, failing state calls and publishes, poison messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{ReplicaExt as _, Task, World, hours, minutes};

#[tokio::test]
async fn duplicate_deliveries_still_give_one_reminder_per_task() {
    let world = World::new().await;
    world.cluster.faults().duplicate_deliveries(true);
    let replicas = [world.replica().await, world.replica().await];
    let tasks: Vec<Task> = (0..10)
        .map(|_| Task::new().due(Some(world.t0 + hours(3))))
        .collect();
    for task in &tasks {
        world.publish(&task.created()).await;
        world
            .publish(&task.at(2, Some(world.t0 + hours(4))).updated())
            .await;
    }
    for task in &tasks {
        world.wait_for_version(task.id(), 2).await;
    }
    world.advance(hours(3) + minutes(1));
    world.wait_for_reminders(10).await;
    for replica in &replicas {
        if replica.handle.holds_lease() {
            replica.scans(3).await;
        }
    }
    let reminders = world.reminders();
    assert_eq!(reminders.len(), 10);
    let ids: BTreeSet<_> = reminders.iter().map(|r| r.envelope.data.task_id).collect();
    assert_eq!(ids, tasks.iter().map(Task::id).collect());
    assert!(reminders.iter().all(|r| r.envelope.data.task_version == 2));
    for replica in replicas {
        replica.stop().await;
    }
}

#[tokio::test]
async fn failing_state_calls_are_retried_and_nothing_is_lost() {
    let world = World::from_fixture("resilient").await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let tasks: Vec<Task> = (0..5)
        .map(|_| Task::new().due(Some(world.t0 + hours(2))))
        .collect();
    world.cluster.faults().fail_next_state_ops(8);
    for task in &tasks {
        world.publish(&task.created()).await;
    }
    for task in &tasks {
        world.wait_for_version(task.id(), 1).await;
    }
    world.advance(hours(1) + minutes(1));
    world.wait_for_reminders(5).await;
    replica.scans(3).await;
    assert_eq!(world.reminders().len(), 5);
    assert!(
        world
            .cluster
            .published("reminder-scheduler-dead-letters")
            .is_empty()
    );
    replica.stop().await;
}

#[tokio::test]
async fn a_failed_publish_is_retried_at_the_next_scan() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let task = Task::new().due(Some(world.t0 + hours(2)));
    world.publish(&task.created()).await;
    world.wait_for_version(task.id(), 1).await;
    // More failures than the client's own retries absorb: the first scan gives up on it.
    world.cluster.faults().fail_next_publishes(6);
    world.advance(hours(1) + minutes(1));
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.data.task_id, task.id());
    replica.scans(3).await;
    assert_eq!(world.reminders().len(), 1);
    replica.stop().await;
}

#[tokio::test]
async fn an_undecodable_event_is_dead_lettered() {
    let world = World::new().await;
    let replica = world.replica().await;
    world
        .cluster
        .publish(
            "task-api",
            "task-created",
            &serde_json::json!({"event_type": "task-created", "nonsense": true}),
        )
        .await
        .unwrap();
    let dead = world
        .cluster
        .wait_for_published(
            "reminder-scheduler-dead-letters",
            1,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(dead[0]["topic"], "task-created");
    replica.stop().await;
}
