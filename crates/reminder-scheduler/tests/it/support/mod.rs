//! Test harness: one or more scheduler replicas, each with its own sidecar on one cluster
//! (`service_testing`), a shared manual clock, and the task events task-api would publish
//! (`service_testing::TaskFixture`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod lease_cases;
pub mod redis;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use events::{Envelope, EventPayload};
use reminder_scheduler::startup::Overrides;
use reminder_scheduler::{Application, Handle, ManualClock, Settings};
use service_testing::{AppBuilder, eventually};
pub use service_testing::{Cluster, DEADLINE, TaskFixture as Task};
use uuid::Uuid;

pub const APP: &str = events::apps::REMINDER_SCHEDULER;
pub const DUE_SOON: &str = "task-due-soon";

/// One running replica: the application and its sidecar.
pub type Replica = service_testing::TestApp<Application>;

/// The settings the tests start from: lead time 1 h and 1 min buckets (the defaults), but scans
/// every 100 ms and a 2 s lease renewed every 300 ms, so takeovers happen within a test.
pub fn settings() -> Settings {
    service_testing::settings(&[
        ("SCAN_INTERVAL", "100ms"),
        ("LEASE_TTL", "2s"),
        ("LEASE_RENEW_INTERVAL", "300ms"),
    ])
}

/// What the tests do with a replica beyond starting and stopping it.
pub trait ReplicaExt {
    /// Waits until this replica has completed `n` more scans.
    async fn scans(&self, n: u64);
    /// Waits until this replica holds the lease.
    async fn wait_for_lease(&self);
    /// A crash: the process vanishes without releasing its lease.
    async fn crash(self);
}

impl ReplicaExt for Replica {
    async fn scans(&self, n: u64) {
        wait_scans(&self.handle, n).await;
    }

    async fn wait_for_lease(&self) {
        eventually("the lease", || async {
            self.handle.holds_lease().then_some(())
        })
        .await;
    }

    async fn crash(self) {
        self.handle.abandon_lease();
        self.kill().await;
    }
}

/// Waits until `handle`'s replica has completed `n` more scans.
pub async fn wait_scans(handle: &Handle, n: u64) {
    let mut scans = handle.scans();
    let target = *scans.borrow_and_update() + n;
    handle.scan_now();
    tokio::time::timeout(DEADLINE, scans.wait_for(|done| *done >= target))
        .await
        .expect("scans did not complete in time")
        .expect("scan counter closed");
}

/// The cluster, the shared clock and the start time of the test.
pub struct World {
    pub cluster: Cluster,
    pub clock: ManualClock,
    pub t0: DateTime<Utc>,
}

impl World {
    pub async fn new() -> Self {
        Self::on(Cluster::in_memory().await.expect("cluster"))
    }

    /// A cluster whose components and resiliency come from a fixture folder.
    pub async fn from_fixture(name: &str) -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        Self::from_resources(dir).await
    }

    pub async fn from_resources(dir: std::path::PathBuf) -> Self {
        Self::on(Cluster::from_resources(&[dir]).await.expect("cluster"))
    }

    pub fn on(cluster: Cluster) -> Self {
        let t0 = Utc::now().trunc_subsecs(0);
        Self {
            cluster,
            clock: ManualClock::new(t0),
            t0,
        }
    }

    /// Starts a replica with the test [`settings`].
    pub async fn replica(&self) -> Replica {
        self.replica_with(settings()).await
    }

    pub async fn replica_with(&self, settings: Settings) -> Replica {
        AppBuilder::new(settings)
            .on(&self.cluster)
            .overrides(Overrides {
                clock: Arc::new(self.clock.clone()),
            })
            .start()
            .await
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }

    /// Publishes a task event as task-api would.
    pub async fn publish<T: EventPayload>(&self, envelope: &Envelope<T>) {
        let json = serde_json::to_value(envelope).expect("envelope json");
        self.cluster
            .publish(events::apps::TASK_API, T::TOPIC.as_str(), &json)
            .await
            .expect("publish");
    }

    /// The scheduler's projection of `task`.
    pub async fn record(&self, task: Uuid) -> Option<serde_json::Value> {
        self.cluster.state_of(APP, &format!("task:{task}")).await
    }

    /// Waits until the projection of `task` reaches `version`.
    pub async fn wait_for_version(&self, task: Uuid, version: u64) -> serde_json::Value {
        eventually(format!("task {task} at version {version}"), || async {
            self.record(task)
                .await
                .filter(|record| record["version"].as_u64() >= Some(version))
        })
        .await
    }

    /// The `task-due-soon` events published so far, as (event id, task id, due date).
    pub fn reminders(&self) -> Vec<Reminder> {
        self.cluster
            .published(DUE_SOON)
            .iter()
            .map(Reminder::from_cloud_event)
            .collect()
    }

    /// Waits for at least `n` reminders in total.
    pub async fn wait_for_reminders(&self, n: usize) -> Vec<Reminder> {
        self.cluster
            .wait_for_published(DUE_SOON, n, DEADLINE)
            .await
            .expect("reminders")
            .iter()
            .map(Reminder::from_cloud_event)
            .collect()
    }
}

/// A published reminder, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Reminder {
    pub cloud_event_id: String,
    pub envelope: Envelope<events::TaskDueSoon>,
}

impl Reminder {
    fn from_cloud_event(ce: &serde_json::Value) -> Self {
        let envelope = serde_json::from_value(ce["data"].clone()).expect("task-due-soon envelope");
        Self {
            cloud_event_id: ce["id"].as_str().unwrap_or_default().to_owned(),
            envelope,
        }
    }
}

pub fn hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

pub fn minutes(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}
