//! Test harness: a real SMTP server (`smtp-sink`), a local Dapr cluster
//! (in-memory state and pub/sub, with an inbound retry policy so RETRY means "try again"), the
//! worker's sidecar, and the worker itself on a free port.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener as StdListener;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use dapr_http::DaprSettings;
use email_worker::{Application, Settings, WorkerSettings};
use events::{Envelope, Priority, TaskCreated, TaskDueSoon, TaskSnapshot, TaskStatus};
use sidecar_testing::{Cluster, TestSidecar};
pub use smtp_sink::SmtpSink;
use uuid::Uuid;

pub const APP: &str = "email-worker";
pub const WAIT: Duration = Duration::from_secs(20);

/// A port nothing listens on (bound, read, released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Component and resiliency files for the cluster: in-memory state and pub/sub, and quick
/// constant retries of deliveries (so a RETRY is tried again within the test's patience).
pub fn resources_dir() -> tempfile::TempDir {
    resources_dir_with(10)
}

/// [`resources_dir`] with the pub/sub delivering up to `concurrency` messages at once per app.
pub fn resources_dir_with(concurrency: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "components.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-state\nspec:\n  type: state.in-memory\n  version: v1\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n  metadata:\n    - name: concurrency\n      value: \"{concurrency}\"\n"
        ),
    );
    write(
        "resiliency.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: test-resiliency\nspec:\n  policies:\n    retries:\n      quick:\n        policy: constant\n        duration: 150ms\n        maxRetries: 60\n  targets:\n    components:\n      todo-pubsub:\n        inbound:\n          retry: quick\n",
    );
    dir
}

/// The worker under test with everything around it.
pub struct TestApp {
    pub cluster: Cluster,
    pub sidecar: TestSidecar,
    pub smtp_port: u16,
    pub app_port: u16,
    pub http: reqwest::Client,
    pub transport: String,
    producers: tokio::sync::Mutex<std::collections::HashMap<String, dapr_http::DaprClient>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _resources: tempfile::TempDir,
}

/// Settings for a worker sending to SMTP on `smtp_port`.
pub fn settings_for(smtp_port: u16) -> WorkerSettings {
    let mut s = WorkerSettings::defaults().unwrap();
    s.app_host = "127.0.0.1".parse().unwrap();
    s.smtp_url = Some(format!("smtp://127.0.0.1:{smtp_port}").into());
    s.smtp_timeout = Duration::from_secs(2);
    s.mail_from = "Tasks <tasks@todo.test>".into();
    s.max_concurrent_sends = 8;
    s
}

/// Starts a cluster, the worker's sidecar and the worker with `settings`.
pub async fn spawn_app_with(smtp_port: u16, settings: WorkerSettings) -> TestApp {
    spawn_app_on(resources_dir(), smtp_port, settings).await
}

/// [`spawn_app_with`] on a cluster made from `resources`.
pub async fn spawn_app_on(
    resources: tempfile::TempDir,
    smtp_port: u16,
    mut settings: WorkerSettings,
) -> TestApp {
    let cluster = Cluster::from_resources(&[resources.path()]).await.unwrap();
    // The sidecar must know the app port before the app (which needs the sidecar's endpoint)
    // exists: reserve a port, start the sidecar (it waits for the app), then bind the app there.
    let app_port = free_port();
    let token = settings
        .app_api_token
        .as_ref()
        .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned());
    let sidecar = cluster
        .sidecar(APP)
        .app_port(Some(app_port))
        .app_api_token(token)
        .start()
        .await
        .unwrap();
    settings.app_port = app_port;
    let app = Application::build(Settings {
        worker: settings,
        dapr: DaprSettings::with_endpoint(sidecar.http_endpoint()),
    })
    .await
    .unwrap();
    let transport = app.transport_description().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    assert!(
        sidecar.wait_ready(Duration::from_secs(10)).await,
        "the sidecar never registered the worker's subscriptions"
    );
    TestApp {
        cluster,
        sidecar,
        smtp_port,
        app_port,
        http: reqwest::Client::new(),
        transport,
        producers: Default::default(),
        stop: Some(stop),
        server: Some(server),
        _resources: resources,
    }
}

/// A worker sending to a fresh SMTP sink.
pub async fn spawn_app() -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().unwrap();
    let app = spawn_app_with(sink.port(), settings_for(sink.port())).await;
    (app, sink)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.app_port)
    }

    /// Publishes `envelope` as its producer (task-api or reminder-scheduler) would: through a
    /// sidecar of that app, with CloudEvent id/type = event_id/event_type and the task id as
    /// partition key (`DaprClient::publish`, what the services use).
    pub async fn publish<T: events::EventPayload>(&self, envelope: &Envelope<T>) {
        let client = self.producer(envelope.topic().producer()).await;
        client.publish(events::PUBSUB_NAME, envelope).await.unwrap();
    }

    /// A client of a sidecar of `app_id` (started on first use, stopped with the cluster).
    pub async fn producer(&self, app_id: &str) -> dapr_http::DaprClient {
        let mut producers = self.producers.lock().await;
        if let Some(client) = producers.get(app_id) {
            return client.clone();
        }
        let sc = self.cluster.sidecar(app_id).start().await.unwrap();
        let client =
            dapr_http::DaprClient::new(DaprSettings::with_endpoint(sc.http_endpoint())).unwrap();
        producers.insert(app_id.to_owned(), client.clone());
        client
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.cluster.shutdown().await;
    }
}

/// A task-created event as task-api publishes it.
pub fn task_created(email: &str, title: &str, description: &str) -> Envelope<TaskCreated> {
    let now = Utc::now();
    Envelope::new(
        "task-api",
        format!("corr-{}", Uuid::now_v7()),
        TaskCreated {
            task: TaskSnapshot {
                task_id: Uuid::now_v7(),
                user_id: Uuid::now_v7(),
                user_email: email.into(),
                title: title.into(),
                description: description.into(),
                priority: Priority::High,
                due_date: Some(Utc.with_ymd_and_hms(2026, 12, 24, 18, 0, 0).unwrap()),
                status: TaskStatus::Open,
                version: 1,
                created_at: now,
                updated_at: now,
            },
        },
    )
}

/// A task-due-soon event as reminder-scheduler publishes it.
pub fn task_due_soon(email: &str, title: &str) -> Envelope<TaskDueSoon> {
    let due = Utc::now() + chrono::Duration::minutes(125);
    Envelope::new(
        "reminder-scheduler",
        format!("corr-{}", Uuid::now_v7()),
        TaskDueSoon {
            task_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            user_email: email.into(),
            title: title.into(),
            due_date: due,
            task_version: 1,
        },
    )
}

/// The value of a counter series on `/metrics` (0 when absent).
pub fn counter(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
