//! Test harness: an in-memory cluster, the audit-logger with its sidecar, sidecars for the
//! producing apps (events are published through them exactly as those apps publish), and
//! builders for the events of one task's life.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use audit_logger::Settings;
use audit_logger::context::AppState;
use audit_logger::sink::MemorySink;
use chrono::Utc;
use dapr_http::{DaprClient, DaprSettings};
use events::{
    Channel, Envelope, EventPayload, NotificationFailed, NotificationSent, Priority, TaskCompleted,
    TaskCreated, TaskDeleted, TaskDueSoon, TaskSnapshot, TaskStatus, TaskUpdated,
};
use serde_json::Value;
use sidecar_testing::{Cluster, TestSidecar};
use tokio::net::TcpListener;
use uuid::Uuid;

pub const APP: &str = events::apps::AUDIT_LOGGER;
pub const TOKEN: &str = "test-admin-token-0123456789";
/// Upper bound of any wait; waits end as soon as their condition holds.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Binds a listener on a port the app's sidecar can be told about before the app serves.
pub async fn reserve_port() -> u16 {
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    reserved.local_addr().unwrap().port()
}

/// The running audit-logger.
pub struct TestApp {
    pub cluster: Cluster,
    pub sidecar: TestSidecar,
    pub port: u16,
    pub ctx: AppState,
    pub lines: MemorySink,
    pub http: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Settings::for_tests(TOKEN)).await
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    let cluster = Cluster::in_memory().await.expect("cluster");
    spawn_on(cluster, settings).await
}

/// Starts the app and its sidecar on `cluster`.
pub async fn spawn_on(cluster: Cluster, settings: Settings) -> TestApp {
    // The harness waits for subscriptions when the app port already accepts connections, and the
    // app needs its sidecar's address: reserve a port, start the sidecar for it, then bind it.
    let port = reserve_port().await;
    let app_token = settings
        .app_api_token
        .as_ref()
        .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned());
    let sidecar = cluster
        .sidecar(APP)
        .app_port(Some(port))
        .app_api_token(app_token)
        .start()
        .await
        .expect("sidecar");
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let lines = MemorySink::default();
    let app = audit_logger::Application::build_with(
        settings,
        DaprSettings::with_endpoint(sidecar.http_endpoint()),
        Arc::new(lines.clone()),
        listener,
    )
    .expect("build");
    let ctx = app.context();
    tokio::spawn(app.run_until_stopped());
    assert!(
        sidecar.wait_ready(DEADLINE).await,
        "sidecar never became ready"
    );
    TestApp {
        cluster,
        sidecar,
        port,
        ctx,
        lines,
        http: reqwest::Client::new(),
    }
}

impl TestApp {
    /// A client of a sidecar of `app_id` (started without an app), to publish as that app.
    pub async fn producer(&self, app_id: &str) -> DaprClient {
        let sc = self
            .cluster
            .sidecar(app_id)
            .start()
            .await
            .expect("producer sidecar");
        let client = DaprClient::new(DaprSettings::with_endpoint(sc.http_endpoint())).unwrap();
        // Keep the sidecar running for the rest of the test.
        std::mem::forget(sc);
        client
    }

    /// The audit-logger's own sidecar, as a client (direct state access for tamper tests).
    pub fn own_dapr(&self) -> DaprClient {
        DaprClient::new(DaprSettings::with_endpoint(self.sidecar.http_endpoint())).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GET on the app with the admin token.
    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// Every entry of a trail, following cursors.
    pub async fn trail(&self, path: &str) -> Vec<Value> {
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}?limit=7&cursor={c}"),
                None => format!("{path}?limit=7"),
            };
            let page = self.get(&url).await;
            entries.extend(page["entries"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return entries,
            }
        }
    }

    /// Waits until `path` (a trail) has at least `n` entries; returns them.
    pub async fn wait_for_entries(&self, path: &str, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let entries = self.trail(path).await;
            if entries.len() >= n {
                return entries;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} has {} entries, wanted {n}",
                entries.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Publishes `envelope` the way its producer does (CloudEvent id/type, partition key).
pub async fn publish<T: EventPayload>(producer: &DaprClient, envelope: &Envelope<T>) {
    producer
        .publish(events::PUBSUB_NAME, envelope)
        .await
        .expect("publish");
}

/// The events of one task's life, with increasing versions.
pub struct TaskLife {
    pub task: TaskSnapshot,
}

impl TaskLife {
    pub fn new() -> Self {
        let now = Utc::now();
        Self {
            task: TaskSnapshot {
                task_id: Uuid::now_v7(),
                user_id: Uuid::now_v7(),
                user_email: "owner@example.com".into(),
                title: "Write the report".into(),
                description: String::new(),
                priority: Priority::High,
                due_date: Some(now + chrono::Duration::hours(2)),
                status: TaskStatus::Open,
                version: 1,
                created_at: now,
                updated_at: now,
            },
        }
    }

    pub fn id(&self) -> Uuid {
        self.task.task_id
    }

    pub fn user(&self) -> Uuid {
        self.task.user_id
    }

    fn bump(&mut self) -> TaskSnapshot {
        self.task.version += 1;
        self.task.updated_at = Utc::now();
        self.task.clone()
    }

    pub fn created(&self) -> Envelope<TaskCreated> {
        Envelope::new(
            "task-api",
            "req-create",
            TaskCreated {
                task: self.task.clone(),
            },
        )
    }

    pub fn updated(&mut self) -> Envelope<TaskUpdated> {
        self.task.title = format!("{} v{}", self.task.title, self.task.version + 1);
        let task = self.bump();
        Envelope::new(
            "task-api",
            "req-update",
            TaskUpdated {
                task,
                changed_fields: vec!["title".into()],
            },
        )
    }

    pub fn completed(&mut self) -> Envelope<TaskCompleted> {
        self.task.status = TaskStatus::Completed;
        let task = self.bump();
        Envelope::new("task-api", "req-complete", TaskCompleted { task })
    }

    pub fn deleted(&mut self) -> Envelope<TaskDeleted> {
        let task = self.bump();
        Envelope::new("task-api", "req-delete", TaskDeleted { task })
    }

    pub fn due_soon(&self) -> Envelope<TaskDueSoon> {
        Envelope::new(
            "reminder-scheduler",
            "scan",
            TaskDueSoon {
                task_id: self.task.task_id,
                user_id: self.task.user_id,
                user_email: self.task.user_email.clone(),
                title: self.task.title.clone(),
                due_date: self.task.due_date.unwrap_or_else(Utc::now),
                task_version: self.task.version,
            },
        )
    }

    pub fn notification_sent(&self, trigger: Uuid) -> Envelope<NotificationSent> {
        Envelope::new(
            "email-worker",
            "mail",
            NotificationSent {
                trigger_event_id: trigger,
                trigger_event_type: "task-due-soon".into(),
                task_id: self.task.task_id,
                user_id: self.task.user_id,
                channel: Channel::Email,
                recipient: self.task.user_email.clone(),
                subject: "Due soon".into(),
                sent_at: Utc::now(),
            },
        )
        .caused_by(trigger)
    }

    pub fn notification_failed(&self, trigger: Uuid, reason: &str) -> Envelope<NotificationFailed> {
        Envelope::new(
            "email-worker",
            "mail",
            NotificationFailed {
                trigger_event_id: trigger,
                trigger_event_type: "task-created".into(),
                task_id: self.task.task_id,
                user_id: self.task.user_id,
                channel: Channel::Email,
                recipient: self.task.user_email.clone(),
                reason: reason.into(),
                failed_at: Utc::now(),
            },
        )
        .caused_by(trigger)
    }
}
