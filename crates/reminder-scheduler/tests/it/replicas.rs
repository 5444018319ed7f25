//! Several replicas (same app id, one sidecar each, one shared store and broker): exactly one
//! reminder per task, and a takeover when the lease holder stops or dies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use reminder_scheduler::policy::reminder_event_id;
use support::{Replica, ReplicaExt as _, Task, World, hours, minutes, wait_scans};
use tokio::time::Instant;
use uuid::Uuid;

async fn holder_of(replicas: &[Replica]) -> usize {
    let deadline = Instant::now() + support::DEADLINE;
    loop {
        let holders: Vec<usize> = (0..replicas.len())
            .filter(|i| replicas[*i].handle.holds_lease())
            .collect();
        assert!(
            holders.len() <= 1,
            "two replicas hold the lease: {holders:?}"
        );
        if let [one] = holders[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "nobody took the lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates `n` tasks due at `due` and waits until the projection has them all.
async fn create_tasks(world: &World, n: usize, due: chrono::DateTime<chrono::Utc>) -> Vec<Task> {
    let tasks: Vec<Task> = (0..n).map(|_| Task::new().due(Some(due))).collect();
    for task in &tasks {
        world.publish(&task.created()).await;
    }
    for task in &tasks {
        world.wait_for_version(task.id(), 1).await;
    }
    tasks
}

/// Asserts every task got exactly one reminder, with its deterministic id, and nothing else.
fn assert_exactly_one_each(world: &World, tasks: &[&Task]) {
    let reminders = world.reminders();
    let ids: Vec<Uuid> = reminders.iter().map(|r| r.envelope.event_id).collect();
    let unique: BTreeSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "a reminder was published twice");
    let expected: BTreeSet<Uuid> = tasks
        .iter()
        .map(|t| reminder_event_id(t.id(), t.snapshot.due_date.unwrap()))
        .collect();
    assert_eq!(unique, expected);
}

#[tokio::test]
async fn two_replicas_publish_exactly_one_reminder_per_task() {
    let world = World::new().await;
    let replicas = vec![world.replica().await, world.replica().await];
    let tasks = create_tasks(&world, 30, world.t0 + hours(3)).await;
    let soon = create_tasks(&world, 5, world.t0 + minutes(30)).await;
    world.wait_for_reminders(5).await;

    world.advance(hours(2) + minutes(1));
    world.wait_for_reminders(35).await;
    // Both replicas keep running; more scans by whoever holds the lease add nothing.
    let holder = holder_of(&replicas).await;
    replicas[holder].scans(3).await;
    let all: Vec<&Task> = tasks.iter().chain(soon.iter()).collect();
    assert_exactly_one_each(&world, &all);
    for replica in replicas {
        replica.stop().await;
    }
}

#[tokio::test]
async fn a_stopped_holder_hands_over_at_once_and_nothing_is_missed_or_doubled() {
    let world = World::new().await;
    let mut replicas = vec![world.replica().await, world.replica().await];
    let early = create_tasks(&world, 10, world.t0 + hours(3)).await;
    let late = create_tasks(&world, 10, world.t0 + hours(5)).await;
    world.advance(hours(2) + minutes(1));
    world.wait_for_reminders(10).await;

    let holder = holder_of(&replicas).await;
    let stopped = Instant::now();
    replicas.remove(holder).stop().await;
    let survivor = &replicas[0];
    survivor.wait_for_lease().await;
    let took = stopped.elapsed();
    eprintln!("takeover after a graceful stop: {took:?}");
    assert!(
        took < support::settings().lease_ttl,
        "takeover took {took:?}"
    );

    world.advance(hours(2));
    world.wait_for_reminders(20).await;
    survivor.scans(3).await;
    let all: Vec<&Task> = early.iter().chain(late.iter()).collect();
    assert_exactly_one_each(&world, &all);
    replicas.remove(0).stop().await;
}

#[tokio::test]
async fn a_crashed_holder_is_replaced_within_one_lease_period() {
    let world = World::new().await;
    let mut replicas = vec![world.replica().await, world.replica().await];
    let early = create_tasks(&world, 10, world.t0 + hours(3)).await;
    let late = create_tasks(&world, 10, world.t0 + hours(5)).await;
    world.advance(hours(2) + minutes(1));
    world.wait_for_reminders(10).await;

    let holder = holder_of(&replicas).await;
    let crashed = Instant::now();
    replicas.remove(holder).crash().await;
    // Reminders come due while nobody holds the lease.
    world.advance(hours(2));
    let survivor = &replicas[0];
    survivor.wait_for_lease().await;
    let took = crashed.elapsed();
    eprintln!("takeover after a crash: {took:?}");
    // The key expires at most one TTL after the holder's last renewal, which came before the
    // crash; the survivor tries right when it expects the expiry. (Slack for a loaded machine.)
    let ttl = support::settings().lease_ttl;
    assert!(
        took <= ttl + Duration::from_millis(500),
        "takeover took {took:?}"
    );

    world.wait_for_reminders(20).await;
    wait_scans(&survivor.handle, 3).await;
    let all: Vec<&Task> = early.iter().chain(late.iter()).collect();
    assert_exactly_one_each(&world, &all);
    replicas.remove(0).stop().await;
}

#[tokio::test]
async fn events_handled_by_either_replica_reach_the_scanner() {
    // Competing consumers: each event goes to one replica, whichever; the projection is shared.
    let world = World::new().await;
    let replicas = vec![world.replica().await, world.replica().await];
    let task = Task::new().due(Some(world.t0 + hours(3)));
    world.publish(&task.created()).await;
    let moved = task.at(2, Some(world.t0 + hours(4)));
    world.publish(&moved.updated()).await;
    world
        .publish(&task.at(3, Some(world.t0 + hours(4))).completed())
        .await;
    world.wait_for_version(task.id(), 3).await;
    let other = Task::new().due(Some(world.t0 + hours(4)));
    world.publish(&other.created()).await;
    world.wait_for_version(other.id(), 1).await;

    world.advance(hours(3) + minutes(1));
    world.wait_for_reminders(1).await;
    let holder = holder_of(&replicas).await;
    replicas[holder].scans(3).await;
    assert_exactly_one_each(&world, &[&other]);
    for replica in replicas {
        replica.stop().await;
    }
}

#[tokio::test]
async fn a_holder_whose_lease_lapsed_stops_scanning_and_one_replica_takes_over() {
    let world = World::new().await;
    let replicas = vec![world.replica().await, world.replica().await];
    let tasks = create_tasks(&world, 10, world.t0 + hours(3)).await;
    let holder = holder_of(&replicas).await;
    // As if the holder had paused past its TTL: its local deadline is gone, its key is not.
    replicas[holder].handle.abandon_lease();
    world.advance(hours(2) + minutes(1));
    // Until the key expires nobody may scan; afterwards exactly one replica holds the lease
    // (`holder_of` fails if two ever do).
    let lapsed = Instant::now();
    let next = holder_of(&replicas).await;
    eprintln!(
        "lease re-acquired by replica {next} (was {holder}) after {:?}",
        lapsed.elapsed()
    );
    world.wait_for_reminders(10).await;
    replicas[next].scans(3).await;
    assert!(!replicas[1 - next].handle.holds_lease());
    let all: Vec<&Task> = tasks.iter().collect();
    assert_exactly_one_each(&world, &all);
    for replica in replicas {
        replica.stop().await;
    }
}
