//! Only the apps allowed to publish a task topic can make the scheduler remind: a `task-created`
//! from another app's sidecar files nothing (so no `task-due-soon`, and no email, for an address
//! of the forger's choosing), while task-api's events, the audit-logger's replays and dead letters
//! given their second chance (which keep their original publisher) are applied.

use crate::support;

use service_testing::{counter, eventually};
use support::{APP, ReplicaExt as _, Task, World, minutes};

const DEAD_LETTERS: &str = "reminder-scheduler-dead-letters";

#[tokio::test]
async fn a_task_created_from_an_app_not_allowed_to_publish_it_schedules_nothing() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    // Due inside the window: an applied event would be reminded at once.
    let forged = Task::new().due(Some(world.t0 + minutes(10)));
    world
        .cluster
        .publish(
            "email-worker",
            "task-created",
            &serde_json::to_value(forged.created()).unwrap(),
        )
        .await
        .unwrap();
    eventually("the forgery judged", || async {
        let metrics = replica.metrics().await;
        let dropped = counter(
            &metrics,
            "reminder_task_events_dropped_total",
            &[("topic", "task-created"), ("reason", "forbidden_publisher")],
        );
        // Counters are per test process; no other test forges a task-created.
        assert!(dropped <= 1.0, "{metrics}");
        (dropped == 1.0).then_some(())
    })
    .await;

    // A genuine event after it is reminded, so the scheduler was working all along.
    let genuine = Task::new().due(Some(world.t0 + minutes(10)));
    world.publish(&genuine.created()).await;
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.data.task_id, genuine.id());
    replica.scans(3).await;
    assert_eq!(world.reminders().len(), 1, "the forged task was reminded");
    assert_eq!(
        world.record(forged.id()).await,
        None,
        "the forgery was filed"
    );
    // Acknowledged, not dead-lettered: the audit-logger records it from its own subscription.
    assert!(world.cluster.published(DEAD_LETTERS).is_empty());
    replica.stop().await;
}

#[tokio::test]
async fn a_task_created_from_task_api_is_reminded() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let task = Task::new().due(Some(world.t0 + minutes(10)));
    world
        .cluster
        .publish(
            events::apps::TASK_API,
            "task-created",
            &serde_json::to_value(task.created()).unwrap(),
        )
        .await
        .unwrap();
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.data.task_id, task.id());
    assert_eq!(reminders[0].envelope.source, APP);
    assert_eq!(
        world.record(task.id()).await.unwrap()["version"],
        1,
        "the projection follows task-api's event"
    );
    replica.stop().await;
}

#[tokio::test]
async fn a_replay_by_the_audit_logger_is_applied() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let task = Task::new().due(Some(world.t0 + minutes(10)));
    world
        .cluster
        .publish(
            events::apps::AUDIT_LOGGER,
            "task-created",
            &serde_json::to_value(task.created()).unwrap(),
        )
        .await
        .unwrap();
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.data.task_id, task.id());
    // A later change replayed the same way is applied too: the projection closes the task.
    world
        .cluster
        .publish(
            events::apps::AUDIT_LOGGER,
            "task-completed",
            &serde_json::to_value(task.at(2, task.snapshot.due_date).completed()).unwrap(),
        )
        .await
        .unwrap();
    let record = world.wait_for_version(task.id(), 2).await;
    assert_eq!(record["open"], false);
    replica.stop().await;
}

/// A task event dead-lettered by a failure (no resiliency policy: the first failed delivery
/// dead-letters it) comes back on the second chance with its original publisher as `source`,
/// and is applied, not dropped as a forgery.
#[tokio::test]
async fn a_dead_lettered_task_event_is_applied_on_its_second_chance() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let task = Task::new().due(Some(world.t0 + minutes(10)));
    // More failures than the client's own retries absorb: the first delivery fails.
    world.cluster.faults().fail_next_state_ops(12);
    world.publish(&task.created()).await;
    let dead = world
        .cluster
        .wait_for_published(DEAD_LETTERS, 1, support::DEADLINE)
        .await
        .unwrap();
    assert_eq!(dead[0]["topic"], "task-created");
    assert_eq!(dead[0]["source"], events::apps::TASK_API);
    world.wait_for_version(task.id(), 1).await;
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.data.task_id, task.id());
    replica.stop().await;
}
