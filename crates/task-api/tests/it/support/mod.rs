//! Test harness: task-api with its sidecar through `service_testing`, test users with tokens,
//! and the requests and checks the API tests repeat.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::Response;
use serde_json::{Value, json};
use service_testing::{AppBuilder, eventually};
pub use service_testing::{Cluster, TxnFault, free_port};
use task_api::{Application, Settings};
use uuid::Uuid;

pub const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";

pub type TestApp = service_testing::TestApp<Application>;

pub fn settings(extra: &[(&str, &str)]) -> Settings {
    let mut env = vec![
        ("JWT_SECRET", SECRET),
        // Long grace: the relay must not re-publish what the request path publishes itself.
        ("OUTBOX_GRACE_PERIOD", "60s"),
        ("OUTBOX_RELAY_INTERVAL", "200ms"),
    ];
    env.extend_from_slice(extra);
    service_testing::settings(&env)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    AppBuilder::new(settings(extra)).start().await
}

/// Like [`spawn_app_with`], with a recording, fault-injecting proxy in front of the sidecar.
pub async fn spawn_proxied(extra: &[(&str, &str)]) -> TestApp {
    AppBuilder::new(settings(extra)).proxied().start().await
}

pub struct User {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

/// The calls the tests make on the API, and what they read of the published events.
pub trait TaskApi {
    fn user(&self) -> User;
    async fn create(&self, user: &User, body: Value) -> Response;
    /// Creates a task and returns its JSON (asserting 201).
    async fn create_ok(&self, user: &User, title: &str) -> Value;
    async fn get(&self, user: &User, path: &str) -> Response;
    async fn patch(&self, user: &User, id: &str, body: Value, etag: Option<&str>) -> Response;
    /// Published CloudEvents of `topic` whose task id is `task_id`.
    fn events_of(&self, topic: &str, task_id: &str) -> Vec<Value>;
    /// Waits until `n` events of `topic` for `task_id` were published.
    async fn wait_events(&self, topic: &str, task_id: &str, n: usize) -> Vec<Value>;
}

impl TaskApi for TestApp {
    fn user(&self) -> User {
        let id = Uuid::new_v4();
        let email = format!("u{}@example.com", &id.simple().to_string()[..8]);
        let token =
            task_api::auth::issue_token(&self.settings, id, &email, Duration::from_secs(3600))
                .unwrap();
        User { id, email, token }
    }

    async fn create(&self, user: &User, body: Value) -> Response {
        self.client
            .post(self.url("/api/tasks"))
            .bearer_auth(&user.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn create_ok(&self, user: &User, title: &str) -> Value {
        let response = self.create(user, json!({ "title": title })).await;
        assert_eq!(response.status(), 201, "create {title}");
        response.json().await.unwrap()
    }

    async fn get(&self, user: &User, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }

    async fn patch(&self, user: &User, id: &str, body: Value, etag: Option<&str>) -> Response {
        let mut request = self
            .client
            .patch(self.url(&format!("/api/tasks/{id}")))
            .bearer_auth(&user.token)
            .json(&body);
        if let Some(etag) = etag {
            request = request.header("if-match", etag);
        }
        request.send().await.unwrap()
    }

    fn events_of(&self, topic: &str, task_id: &str) -> Vec<Value> {
        self.cluster
            .published(topic)
            .into_iter()
            .filter(|ce| ce["data"]["data"]["task"]["task_id"] == task_id)
            .collect()
    }

    async fn wait_events(&self, topic: &str, task_id: &str, n: usize) -> Vec<Value> {
        eventually(format!("{n} {topic} event(s) of {task_id}"), || async {
            let events = self.events_of(topic, task_id);
            (events.len() >= n).then_some(events)
        })
        .await
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(response: Response, status: u16, slug: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], format!("urn:todo:problem:{slug}"), "{body}");
    assert_eq!(body["status"], status);
    body
}

/// The field names a problem lists.
pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every outbox entry of the app's store is settled: published, projected into the
/// index and deleted (the cleaner deletes an entry's key only after both).
pub async fn wait_projected(app: &TestApp) {
    eventually(
        "every change projected and its outbox key deleted",
        || async {
            let keys = app.cluster.state_keys("task-api").await;
            (!keys.iter().any(|k| k.starts_with("outbox:"))).then_some(())
        },
    )
    .await;
}
