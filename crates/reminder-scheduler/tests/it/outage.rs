//! No reminder is lost to a pub/sub outage of any length, nor to a task filed in a bucket the
//! scanner has already passed; and an entry that can never be settled does not hold the scanner
//! back. None of this may rest on `SCAN_LOOKBACK`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use reminder_scheduler::Settings;
use reminder_scheduler::lease::{Lease, LeaseState};
use reminder_scheduler::store::Store;
use service_testing::sidecar_client;
use support::{APP, Replica, ReplicaExt as _, Task, World, hours, minutes, settings};

/// A store client of the scheduler's own keys, through a sidecar of its app id that has no app
/// (it lives as long as the cluster).
async fn side_store(world: &World) -> Store {
    let dapr = sidecar_client(&world.cluster, APP).await;
    Store::new(dapr, events::STATE_STORE_NAME)
}

/// The `due:` keys still in the store.
async fn bucket_keys(world: &World) -> Vec<String> {
    let keys = world.cluster.state_keys(APP).await;
    keys.into_iter().filter(|k| k.starts_with("due:")).collect()
}

/// Moves the clock `by` in steps of `step`, with at least one whole scan after each step.
async fn pass_time(world: &World, replica: &Replica, by: chrono::Duration, step: chrono::Duration) {
    let mut passed = chrono::Duration::zero();
    while passed < by {
        world.advance(step);
        passed += step;
        // The first scan counted may have started before the clock moved.
        replica.scans(2).await;
    }
}

/// Tasks due `due_minutes` after the start, whose reminders fall due while the broker refuses
/// every publish for `outage` minutes (the clock moving `step` minutes per scan): once it is
/// back, every reminder must go out once, and no bucket entry may be left behind.
async fn outage_case(settings: Settings, due_minutes: [i64; 4], outage: i64, step: i64) {
    let world = World::new().await;
    let replica = world.replica_with(settings).await;
    replica.wait_for_lease().await;
    let tasks: Vec<Task> = due_minutes
        .iter()
        .map(|m| Task::new().due(Some(world.t0 + minutes(*m))))
        .collect();
    for task in &tasks {
        world.publish(&task.created()).await;
    }
    for task in &tasks {
        world.wait_for_version(task.id(), 1).await;
    }
    replica.scans(2).await;
    assert!(world.reminders().is_empty(), "reminded before the window");

    // The broker refuses every publish; the state store stays up.
    world.cluster.faults().fail_next_publishes(usize::MAX);
    pass_time(&world, &replica, minutes(outage), minutes(step)).await;
    world.cluster.faults().fail_next_publishes(0);
    assert!(world.reminders().is_empty());

    world.advance(minutes(1));
    let reminders = world.wait_for_reminders(tasks.len()).await;
    replica.scans(3).await;
    let reminders_now = world.reminders();
    assert_eq!(
        reminders_now.len(),
        reminders.len(),
        "a reminder went out twice"
    );
    let reminded: BTreeSet<_> = reminders_now
        .iter()
        .map(|r| r.envelope.data.task_id)
        .collect();
    assert_eq!(reminded, tasks.iter().map(Task::id).collect());
    assert_eq!(bucket_keys(&world).await, Vec::<String>::new());
    replica.stop().await;
}

#[tokio::test]
async fn reminders_due_during_a_publish_outage_longer_than_the_lookback_go_out_after_it() {
    // The default test settings re-read two minutes behind the watermark; the first reminder
    // falls due at the first minute of a five-minute outage.
    outage_case(settings(), [61, 62, 63, 64], 5, 1).await;
}

#[tokio::test]
async fn a_long_publish_outage_loses_nothing_without_any_lookback() {
    let settings = Settings {
        scan_lookback: Duration::ZERO,
        ..settings()
    };
    // The windows open 35-38 minutes in; the broker is back at 90, before the tasks fall due.
    outage_case(settings, [95, 96, 97, 98], 90, 15).await;
}

#[tokio::test]
async fn a_task_filed_behind_the_scanner_by_a_lagging_clock_is_still_reminded() {
    let world = World::new().await;
    let first = world.replica().await;
    first.wait_for_lease().await;
    // A few minutes of scans: the watermark is at the bucket of now + 1 h (the window's far
    // edge), and everything before it has been read more than once.
    pass_time(&world, &first, minutes(3), minutes(1)).await;
    first.stop().await;
    let now = world.t0 + minutes(3);

    // Another replica holds the lease while this one applies an event with a clock 30 minutes
    // behind: the task, due 45 minutes from now, is outside that clock's window, so it is filed
    // in its due date's bucket, which the scanner passed a quarter of an hour ago.
    let standby = Lease::new(
        side_store(&world).await,
        "other-replica",
        Duration::from_secs(60),
    );
    assert_eq!(standby.acquire_or_renew().await.unwrap(), LeaseState::Held);
    let second = world.replica().await;
    world.clock.set(now - minutes(30));
    let due = now + minutes(45);
    let task = Task::new().due(Some(due));
    world.publish(&task.created()).await;
    world.wait_for_version(task.id(), 1).await;

    world.clock.set(now + minutes(1));
    standby.release().await.unwrap();
    second.wait_for_lease().await;
    let reminders = world.wait_for_reminders(1).await;
    assert_eq!(reminders[0].envelope.data.task_id, task.id());
    assert_eq!(reminders[0].envelope.data.due_date, due);
    second.scans(3).await;
    assert_eq!(world.reminders().len(), 1);
    second.stop().await;
}

#[tokio::test]
async fn an_entry_whose_task_never_arrives_does_not_hold_the_scanner_back() {
    let world = World::new().await;
    let replica = world.replica().await;
    replica.wait_for_lease().await;
    // An entry for a task whose projection never arrives (its event was dead-lettered, or its
    // tombstone expired before the bucket came due), a few minutes inside the window.
    let store = side_store(&world).await;
    let stray = uuid::Uuid::now_v7();
    let bucket = (world.t0 + minutes(50)).timestamp().div_euclid(60) * 60;
    store
        .write(
            &format!("due:{bucket}"),
            &serde_json::json!({"tasks": {stray.to_string(): 1}}),
            None,
            None,
        )
        .await
        .unwrap();

    pass_time(&world, &replica, minutes(30), minutes(10)).await;
    let mark = world.cluster.state_of(APP, "scan-watermark").await.unwrap();
    let edge = (world.t0 + minutes(30) + hours(1))
        .timestamp()
        .div_euclid(60)
        * 60;
    assert_eq!(mark["next_bucket"], edge, "{mark}");
    replica.stop().await;
}
