//! Test harness: an in-memory cluster (state store + pub/sub with `state.redis` semantics), one
//! or more scheduler replicas each with its own sidecar, a shared manual clock, and builders for
//! the task events task-api would publish.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod lease_cases;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use dapr_http::DaprSettings;
use events::{
    Envelope, EventPayload, Priority, TaskCompleted, TaskCreated, TaskDeleted, TaskSnapshot,
    TaskStatus, TaskUpdated,
};
use reminder_scheduler::{Application, Handle, ManualClock, Settings};
use sidecar_testing::{Cluster, TestSidecar};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const APP: &str = events::apps::REMINDER_SCHEDULER;
pub const DUE_SOON: &str = "task-due-soon";
/// Upper bound of any wait in these tests; the waits themselves end as soon as the condition
/// holds.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// One running replica: the application and its sidecar.
pub struct Replica {
    pub handle: Handle,
    pub port: u16,
    pub sidecar: Option<TestSidecar>,
    pub task: JoinHandle<Result<(), reminder_scheduler::Error>>,
}

impl Replica {
    /// Graceful stop: the application releases its lease, then its sidecar goes.
    pub async fn stop(mut self) {
        self.handle.stop();
        let _ = tokio::time::timeout(DEADLINE, &mut self.task).await;
        if let Some(sidecar) = self.sidecar.take() {
            sidecar.shutdown().await;
        }
    }

    /// A crash: the process vanishes without releasing its lease.
    pub async fn kill(mut self) {
        self.handle.abandon_lease();
        self.task.abort();
        let _ = (&mut self.task).await;
        if let Some(sidecar) = self.sidecar.take() {
            sidecar.shutdown().await;
        }
    }

    /// Waits until this replica has completed `n` more scans.
    pub async fn scans(&self, n: u64) {
        wait_scans(&self.handle, n).await;
    }

    /// Waits until this replica holds the lease.
    pub async fn wait_for_lease(&self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !self.handle.holds_lease() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the lease was never acquired"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

    /// Starts a replica with the test settings (lead time 1 h, 1 min buckets, 2 s lease).
    pub async fn replica(&self) -> Replica {
        self.replica_with(Settings::for_tests()).await
    }

    pub async fn replica_with(&self, settings: Settings) -> Replica {
        // The harness waits for subscriptions when the app port already accepts connections,
        // and the app needs the sidecar's address to be built. So: reserve a port, release it,
        // start the sidecar on it (the app is not up, so it does not wait), bind the app there,
        // then wait for the sidecar to register the subscriptions.
        let reserved = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("reserve a port");
        let port = reserved.local_addr().expect("addr").port();
        drop(reserved);
        let token = settings
            .app_api_token
            .as_ref()
            .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned());
        let sidecar = self
            .cluster
            .sidecar(APP)
            .app_port(Some(port))
            .app_api_token(token)
            .start()
            .await
            .expect("sidecar");
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind the reserved port");
        let app = Application::build_with(
            settings,
            DaprSettings::with_endpoint(sidecar.http_endpoint()),
            Arc::new(self.clock.clone()),
            listener,
        )
        .expect("build");
        let handle = app.handle();
        let port = app.port();
        let task = tokio::spawn(app.run_until_stopped());
        assert!(
            sidecar.wait_ready(DEADLINE).await,
            "sidecar never became ready"
        );
        Replica {
            handle,
            port,
            sidecar: Some(sidecar),
            task,
        }
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
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(record) = self.record(task).await
                && record["version"].as_u64() >= Some(version)
            {
                return record;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {task} never reached version {version}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

/// A task as task-api would describe it.
#[derive(Debug, Clone)]
pub struct Task {
    pub snapshot: TaskSnapshot,
}

impl Task {
    pub fn new(due: Option<DateTime<Utc>>) -> Self {
        let now = Utc::now();
        Self {
            snapshot: TaskSnapshot {
                task_id: Uuid::now_v7(),
                user_id: Uuid::now_v7(),
                user_email: "ada@example.com".into(),
                title: "file the report".into(),
                description: String::new(),
                priority: Priority::High,
                due_date: due,
                status: TaskStatus::Open,
                version: 1,
                created_at: now,
                updated_at: now,
            },
        }
    }

    pub fn id(&self) -> Uuid {
        self.snapshot.task_id
    }

    /// The task at `version` with `due` (the state an update announces).
    pub fn at(&self, version: u64, due: Option<DateTime<Utc>>) -> Self {
        let mut next = self.clone();
        next.snapshot.version = version;
        next.snapshot.due_date = due;
        next
    }

    fn envelope<T: EventPayload>(&self, data: T) -> Envelope<T> {
        Envelope::new(events::apps::TASK_API, format!("corr-{}", self.id()), data)
    }

    pub fn created(&self) -> Envelope<TaskCreated> {
        self.envelope(TaskCreated {
            task: self.snapshot.clone(),
        })
    }

    pub fn updated(&self) -> Envelope<TaskUpdated> {
        self.envelope(TaskUpdated {
            task: self.snapshot.clone(),
            changed_fields: vec!["due_date".into()],
        })
    }

    pub fn completed(&self) -> Envelope<TaskCompleted> {
        let mut task = self.snapshot.clone();
        task.status = TaskStatus::Completed;
        self.envelope(TaskCompleted { task })
    }

    pub fn deleted(&self) -> Envelope<TaskDeleted> {
        self.envelope(TaskDeleted {
            task: self.snapshot.clone(),
        })
    }
}

pub fn hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

pub fn minutes(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}
