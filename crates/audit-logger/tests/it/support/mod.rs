//! Test harness: the audit-logger with its sidecar (`service_testing`), its entry lines kept in
//! memory, sidecars for the producing apps (events are published through them exactly as those
//! apps publish), and the events of one task's life (`service_testing::TaskFixture`).
// Shared by two test binaries (`it` and `duplicates`), each using part of it.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::ops::Deref;
use std::sync::Arc;

use audit_logger::sink::MemorySink;
use audit_logger::startup::Overrides;
use audit_logger::{Application, Settings};
use dapr_http::DaprClient;
use events::{Envelope, EventPayload};
use serde_json::Value;
use service_testing::{AppBuilder, eventually};
pub use service_testing::{Cluster, DEADLINE, TaskFixture, free_port};

pub const APP: &str = events::apps::AUDIT_LOGGER;
pub const TOKEN: &str = "test-admin-token-0123456789";
pub const CHAIN_KEY: &str = "test-chain-key-0123456789abcdef0123456789";

/// The settings the tests start from: the defaults with an admin token, a chain key and no
/// stdout lines.
pub fn settings() -> Settings {
    service_testing::settings(&[
        ("AUDIT_ADMIN_TOKEN", TOKEN),
        ("AUDIT_CHAIN_KEY", CHAIN_KEY),
        ("AUDIT_STDOUT", "false"),
    ])
}

/// The chain key of [`settings`].
pub fn chain_key() -> audit_logger::chain_key::ChainKey {
    audit_logger::chain_key::ChainKey::new(&CHAIN_KEY.to_owned().into()).unwrap()
}

/// The running audit-logger and the entry lines it wrote.
pub struct TestApp {
    pub app: service_testing::TestApp<Application>,
    pub lines: MemorySink,
}

impl Deref for TestApp {
    type Target = service_testing::TestApp<Application>;

    fn deref(&self) -> &Self::Target {
        &self.app
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(settings()).await
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    start(AppBuilder::new(settings)).await
}

/// [`spawn_with`] behind a recording proxy (`app.proxy`) in front of its sidecar.
pub async fn spawn_proxied(settings: Settings) -> TestApp {
    start(AppBuilder::new(settings).proxied()).await
}

/// [`spawn_with`] on `cluster` (a test's own resources; stopped with the app).
pub async fn spawn_on(cluster: Cluster, settings: Settings) -> TestApp {
    start(AppBuilder::new(settings).with_cluster(cluster)).await
}

async fn start(builder: AppBuilder<Application>) -> TestApp {
    let lines = MemorySink::default();
    let app = builder
        .overrides(Overrides {
            sink: Some(Arc::new(lines.clone())),
        })
        .start()
        .await;
    TestApp { app, lines }
}

impl TestApp {
    /// GET on the app with the admin token.
    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .client
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
        eventually(format!("{n} entries in {path}"), || async {
            let entries = self.trail(path).await;
            (entries.len() >= n).then_some(entries)
        })
        .await
    }
}

/// Publishes `envelope` the way its producer does (CloudEvent id/type, partition key).
pub async fn publish<T: EventPayload>(producer: &DaprClient, envelope: &Envelope<T>) {
    producer
        .publish(events::PUBSUB_NAME, envelope)
        .await
        .expect("publish");
}
