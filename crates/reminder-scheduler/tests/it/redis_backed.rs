//! The same guarantees with `todo-state` on a real Redis (`state.redis`): first-write markers,
//! etags and TTL expiry as production has them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use reminder_scheduler::policy::reminder_event_id;
use support::redis::RedisServer;
use support::{Cluster, lease_cases};
use support::{ReplicaExt as _, Task, World, hours, minutes};
use tokio::time::Instant;

#[tokio::test]
async fn exactly_one_reminder_per_task_across_a_crash_on_redis() {
    let redis = RedisServer::start();
    let world = World::from_resources(redis.resources()).await;
    let mut replicas = vec![world.replica().await, world.replica().await];
    let early: Vec<Task> = (0..10)
        .map(|_| Task::new().due(Some(world.t0 + hours(3))))
        .collect();
    let late: Vec<Task> = (0..10)
        .map(|_| Task::new().due(Some(world.t0 + hours(5))))
        .collect();
    for task in early.iter().chain(late.iter()) {
        world.publish(&task.created()).await;
    }
    for task in early.iter().chain(late.iter()) {
        world.wait_for_version(task.id(), 1).await;
    }
    world.advance(hours(2) + minutes(1));
    world.wait_for_reminders(10).await;

    let deadline = Instant::now() + support::DEADLINE;
    let holder = loop {
        if let Some(i) = replicas.iter().position(|r| r.handle.holds_lease()) {
            break i;
        }
        assert!(Instant::now() < deadline, "nobody holds the lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let crashed = Instant::now();
    replicas.remove(holder).crash().await;
    world.advance(hours(2));
    replicas[0].wait_for_lease().await;
    let took = crashed.elapsed();
    eprintln!("takeover on redis after a crash: {took:?}");
    assert!(
        took <= Duration::from_millis(2600),
        "takeover took {took:?}"
    );

    world.wait_for_reminders(20).await;
    replicas[0].scans(3).await;
    let reminders = world.reminders();
    let ids: BTreeSet<_> = reminders.iter().map(|r| r.envelope.event_id).collect();
    assert_eq!(ids.len(), reminders.len(), "a reminder was published twice");
    let expected: BTreeSet<_> = early
        .iter()
        .chain(late.iter())
        .map(|t| reminder_event_id(t.id(), t.snapshot.due_date.unwrap()))
        .collect();
    assert_eq!(ids, expected);
    replicas.remove(0).stop().await;
}

#[tokio::test]
async fn the_lease_is_exclusive_and_renewable_on_redis() {
    let redis = RedisServer::start();
    let cluster = Cluster::from_resources(&[redis.resources()]).await.unwrap();
    lease_cases::one_holder_at_a_time_and_renewal_keeps_the_lease_alive(&cluster).await;
}

#[tokio::test]
async fn a_paused_holder_is_replaced_and_cannot_renew_on_redis() {
    let redis = RedisServer::start();
    let cluster = Cluster::from_resources(&[redis.resources()]).await.unwrap();
    lease_cases::a_paused_holder_is_replaced_after_the_ttl_and_cannot_renew(&cluster).await;
}
