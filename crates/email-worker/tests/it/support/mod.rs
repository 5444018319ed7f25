//! Test harness: a real SMTP server (`smtp-sink`), a local Dapr cluster (in-memory state and
//! pub/sub, with an inbound retry policy so RETRY means "try again"), and the worker with its
//! sidecar through `service_testing`; on Redis Streams (`service_testing::RedisServer`), what the
//! worker's consumer groups have read and acknowledged (`streams`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod streams;

use std::path::Path;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use email_worker::{Application, Settings};
use events::{Envelope, TaskCreated, TaskDueSoon};
use service_testing::{AppBuilder, Cluster, TaskFixture};
pub use smtp_sink::SmtpSink;

pub const WAIT: Duration = Duration::from_secs(20);

pub type TestApp = service_testing::TestApp<Application>;

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

/// Settings for a worker sending to SMTP on `smtp_port`.
pub fn settings_for(smtp_port: u16) -> Settings {
    let url = format!("smtp://127.0.0.1:{smtp_port}");
    service_testing::settings(&[
        ("SMTP_URL", url.as_str()),
        ("SMTP_TIMEOUT", "2s"),
        ("MAIL_FROM", "Tasks <tasks@todo.test>"),
        ("MAX_CONCURRENT_SENDS", "8"),
    ])
}

/// Starts a cluster, the worker's sidecar and the worker with `settings`.
pub async fn spawn_app_with(settings: Settings) -> TestApp {
    spawn_app_on(resources_dir(), settings).await
}

/// [`spawn_app_with`] on a cluster made from the resources folder `resources` (stopped with the
/// worker).
pub async fn spawn_app_on(resources: impl AsRef<Path>, settings: Settings) -> TestApp {
    let cluster = Cluster::from_resources(&[resources.as_ref()])
        .await
        .unwrap();
    AppBuilder::new(settings)
        .with_cluster(cluster)
        .start()
        .await
}

/// A worker sending to a fresh SMTP sink.
pub async fn spawn_app() -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().unwrap();
    let app = spawn_app_with(settings_for(sink.port())).await;
    (app, sink)
}

/// A task-created event as task-api publishes it, due on Christmas Eve 2026 at 18:00 UTC.
pub fn task_created(email: &str, title: &str, description: &str) -> Envelope<TaskCreated> {
    let due = Utc.with_ymd_and_hms(2026, 12, 24, 18, 0, 0).unwrap();
    TaskFixture::new()
        .email(email)
        .title(title)
        .description(description)
        .due(Some(due))
        .created()
}

/// A task-due-soon event as reminder-scheduler publishes it, due in 2 hours 5 minutes.
pub fn task_due_soon(email: &str, title: &str) -> Envelope<TaskDueSoon> {
    TaskFixture::new()
        .email(email)
        .title(title)
        .due(Some(Utc::now() + chrono::Duration::minutes(125)))
        .due_soon()
}
