//! One replica: when reminders fire, rescheduling, cancellation, stale and repeated events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use reminder_scheduler::Settings;
use reminder_scheduler::policy::reminder_event_id;
use support::{ReplicaExt as _, Task, World, hours, minutes};

#[tokio::test]
async fn a_reminder_fires_once_inside_the_window_and_not_before() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let due = world.t0 + hours(3);
    let task = Task::new().due(Some(due));
    let created = task.created();
    world.publish(&created).await;
    world.wait_for_version(task.id(), 1).await;

    // Before the window (due - lead = t0 + 2h): nothing, even one second before it opens.
    replica.scans(2).await;
    world.advance(hours(2) - chrono::Duration::seconds(1));
    replica.scans(2).await;
    assert!(world.reminders().is_empty(), "reminded before the window");

    world.advance(chrono::Duration::seconds(2));
    let reminders = world.wait_for_reminders(1).await;
    let reminder = &reminders[0];
    let expected_id = reminder_event_id(task.id(), due);
    assert_eq!(reminder.envelope.event_id, expected_id);
    assert_eq!(reminder.cloud_event_id, expected_id.to_string());
    assert_eq!(reminder.envelope.data.task_id, task.id());
    assert_eq!(reminder.envelope.data.due_date, due);
    assert_eq!(reminder.envelope.data.user_email, task.snapshot.user_email);
    assert_eq!(reminder.envelope.causation_id, Some(created.event_id));
    assert_eq!(reminder.envelope.correlation_id, created.correlation_id);
    assert_eq!(reminder.envelope.source, "reminder-scheduler");

    // Further scans, later in the window: still exactly one.
    world.advance(minutes(30));
    replica.scans(3).await;
    assert_eq!(world.reminders().len(), 1);
    let record = world.record(task.id()).await.unwrap();
    assert_eq!(
        record["reminded_for"],
        serde_json::json!(due.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    );
    replica.stop().await;
}

#[tokio::test]
async fn a_task_due_inside_the_window_is_reminded_at_once_and_an_overdue_one_is_not() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let overdue = Task::new().due(Some(world.t0 - minutes(5)));
    world.publish(&overdue.created()).await;
    let soon = Task::new().due(Some(world.t0 + minutes(20)));
    world.publish(&soon.created()).await;

    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.data.task_id, soon.id());
    world.wait_for_version(overdue.id(), 1).await;
    replica.scans(3).await;
    assert_eq!(world.reminders().len(), 1, "the overdue task was reminded");
    replica.stop().await;
}

#[tokio::test]
async fn overdue_tasks_are_reminded_when_configured() {
    let world = World::new().await;
    let settings = Settings {
        remind_overdue: true,
        ..support::settings()
    };
    let replica = world.replica_with(settings).await;
    replica.wait_for_lease().await;
    let overdue = Task::new().due(Some(world.t0 - minutes(5)));
    world.publish(&overdue.created()).await;
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.data.task_id, overdue.id());
    replica.stop().await;
}

#[tokio::test]
async fn a_short_lead_time_is_honoured() {
    let world = World::new().await;
    let settings = Settings {
        reminder_lead_time: std::time::Duration::from_secs(10 * 60),
        ..support::settings()
    };
    let replica = world.replica_with(settings).await;
    replica.wait_for_lease().await;
    let task = Task::new().due(Some(world.t0 + minutes(30)));
    world.publish(&task.created()).await;
    world.wait_for_version(task.id(), 1).await;
    world.advance(minutes(19));
    replica.scans(2).await;
    assert!(
        world.reminders().is_empty(),
        "reminded more than 10 minutes ahead"
    );
    world.advance(minutes(1));
    assert_eq!(
        world.wait_for_reminders(1).await[0].envelope.data.task_id,
        task.id()
    );
    replica.stop().await;
}

#[tokio::test]
async fn a_moved_due_date_reschedules() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let old_due = world.t0 + hours(3);
    let new_due = world.t0 + hours(5);
    let task = Task::new().due(Some(old_due));
    world.publish(&task.created()).await;
    let moved = task.at(2, Some(new_due)).updated();
    world.publish(&moved).await;
    world.wait_for_version(task.id(), 2).await;

    // The old window passes without a reminder.
    world.advance(hours(2) + minutes(30));
    replica.scans(3).await;
    assert!(
        world.reminders().is_empty(),
        "reminded for the old due date"
    );

    world.advance(hours(2));
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(
        reminders[0].envelope.event_id,
        reminder_event_id(task.id(), new_due)
    );
    assert_eq!(reminders[0].envelope.data.due_date, new_due);
    assert_eq!(reminders[0].envelope.causation_id, Some(moved.event_id));
    replica.scans(2).await;
    assert_eq!(world.reminders().len(), 1);
    replica.stop().await;
}

#[tokio::test]
async fn a_due_date_moved_after_its_reminder_gets_a_new_one() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let first_due = world.t0 + minutes(30);
    let task = Task::new().due(Some(first_due));
    world.publish(&task.created()).await;
    world.wait_for_reminders(1).await;
    let second_due = world.t0 + minutes(40);
    world.publish(&task.at(2, Some(second_due)).updated()).await;
    let reminders = world.wait_for_reminders(2).await;
    assert_eq!(
        reminders[1].envelope.event_id,
        reminder_event_id(task.id(), second_due)
    );
    assert_ne!(
        reminders[0].envelope.event_id,
        reminders[1].envelope.event_id
    );
    replica.stop().await;
}

#[tokio::test]
async fn completion_and_deletion_cancel() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let due = world.t0 + hours(3);
    let completed = Task::new().due(Some(due));
    let deleted = Task::new().due(Some(due));
    let control = Task::new().due(Some(due));
    for task in [&completed, &deleted, &control] {
        world.publish(&task.created()).await;
    }
    world.publish(&completed.at(2, Some(due)).completed()).await;
    world.publish(&deleted.at(2, Some(due)).deleted()).await;
    world.wait_for_version(completed.id(), 2).await;
    world.wait_for_version(deleted.id(), 2).await;
    world.wait_for_version(control.id(), 1).await;

    world.advance(hours(2) + minutes(1));
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.data.task_id, control.id());
    replica.scans(3).await;
    assert_eq!(world.reminders().len(), 1, "a cancelled task was reminded");
    let tombstone = world.record(completed.id()).await.unwrap();
    assert_eq!(tombstone["open"], false);
    replica.stop().await;
}

#[tokio::test]
async fn stale_and_repeated_events_are_ignored() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let due1 = world.t0 + hours(3);
    let due2 = world.t0 + hours(4);
    let due3 = world.t0 + hours(5);
    let task = Task::new().due(Some(due1));
    world.publish(&task.created()).await;
    let v3 = task.at(3, Some(due3)).updated();
    world.publish(&v3).await;
    world.wait_for_version(task.id(), 3).await;
    // v2 arrives late; v3 and the creation arrive again.
    world.publish(&task.at(2, Some(due2)).updated()).await;
    world.publish(&v3).await;
    world.publish(&task.created()).await;
    // A deletion that was overtaken cannot be undone by the late update either.
    let gone = Task::new().due(Some(due1));
    world.publish(&gone.created()).await;
    world.publish(&gone.at(2, Some(due1)).deleted()).await;
    world.wait_for_version(gone.id(), 2).await;
    world.publish(&gone.at(1, Some(due2)).updated()).await;

    replica.scans(3).await;
    let record = world.record(task.id()).await.unwrap();
    assert_eq!(record["version"], 3);
    assert_eq!(world.record(gone.id()).await.unwrap()["open"], false);

    world.advance(hours(4) + minutes(1));
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(
        reminders[0].envelope.event_id,
        reminder_event_id(task.id(), due3)
    );
    assert_eq!(reminders[0].envelope.causation_id, Some(v3.event_id));
    replica.scans(3).await;
    assert_eq!(world.reminders().len(), 1);
    replica.stop().await;
}

#[tokio::test]
async fn serves_health_metrics_and_the_subscription_table() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    world
        .publish(&Task::new().due(Some(world.t0 + minutes(10))).created())
        .await;
    world.wait_for_reminders(1).await;
    replica.scans(1).await;

    let base = format!("http://127.0.0.1:{}", replica.port);
    let client = reqwest::Client::new();
    let healthz = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert!(healthz.status().is_success());
    let readyz = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert!(readyz.status().is_success());
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "reminders_published_total",
        "reminder_scan_duration_seconds",
        "reminder_lease_held",
        "reminder_tracked_tasks",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    let table: serde_json::Value = client
        .get(format!("{base}/dapr/subscribe"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let topics: Vec<&str> = table
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        topics,
        [
            "task-created",
            "task-updated",
            "task-completed",
            "task-deleted",
            "reminder-scheduler-dead-letters"
        ]
    );
    // The second chance on its own dead letters has no dead-letter topic of its own.
    assert!(table[4].get("deadLetterTopic").is_none(), "{}", table[4]);
    for entry in table.as_array().unwrap() {
        if entry["topic"] != "reminder-scheduler-dead-letters" {
            assert_eq!(entry["deadLetterTopic"], "reminder-scheduler-dead-letters");
        }
        assert_eq!(
            entry["route"],
            format!("/events/{}", entry["topic"].as_str().unwrap())
        );
    }
    replica.stop().await;
}

#[tokio::test]
async fn deliveries_must_carry_the_app_api_token_when_one_is_set() {
    let world = World::new().await;
    let mut settings = support::settings();
    settings.common.app_api_token = Some("s3cret-token".to_owned().into());
    let replica = world.replica_with(settings).await;
    replica.wait_for_lease().await;
    // The sidecar sends the token: the event is applied and reminded.
    let task = Task::new().due(Some(world.t0 + minutes(10)));
    world.publish(&task.created()).await;
    world.wait_for_reminders(1).await;
    // A caller without it is refused.
    let response = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/events/task-created",
            replica.port
        ))
        .json(&task.created())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    replica.stop().await;
}

#[tokio::test]
async fn a_reopened_task_is_reminded_again() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    let due = world.t0 + hours(3);
    let task = Task::new().due(Some(due));
    world.publish(&task.created()).await;
    world.publish(&task.at(2, Some(due)).completed()).await;
    world.wait_for_version(task.id(), 2).await;
    let reopened = task.at(3, Some(due)).updated();
    world.publish(&reopened).await;
    let record = world.wait_for_version(task.id(), 3).await;
    assert_eq!(record["open"], true);

    world.advance(hours(2) + minutes(1));
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.causation_id, Some(reopened.event_id));
    replica.scans(2).await;
    assert_eq!(world.reminders().len(), 1);
    replica.stop().await;
}
