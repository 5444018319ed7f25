//! Test harness: an in-memory Dapr cluster, the task-api sidecar and the app on a random port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;

use std::time::Duration;

use dapr_http::DaprSettings;
use serde_json::{Value, json};
use service_kit::LayeredSettings as _;
use sidecar_testing::{Cluster, TestSidecar};
use task_api::{Application, Settings};
use uuid::Uuid;

pub const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";
pub const APP: &str = "task-api";

pub struct TestApp {
    pub cluster: Cluster,
    pub sidecar: TestSidecar,
    pub base: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub proxy: Option<proxy::Proxy>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// A free port: bound and released, for processes that must be told their port up front.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn settings(extra: &[(&str, &str)]) -> Settings {
    let mut env: Vec<(String, String)> = vec![
        ("JWT_SECRET".into(), SECRET.into()),
        ("BIND_ADDRESS".into(), "127.0.0.1".into()),
        ("APP_PORT".into(), "0".into()),
        // Long grace: the relay must not re-publish what the request path publishes itself.
        ("OUTBOX_GRACE_PERIOD".into(), "60s".into()),
        ("OUTBOX_RELAY_INTERVAL".into(), "200ms".into()),
    ];
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    Settings::load_from(env).unwrap()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let cluster = Cluster::in_memory().await.unwrap();
    spawn_on(cluster, extra).await
}

/// Starts the app (and its sidecar) on an existing cluster.
pub async fn spawn_on(cluster: Cluster, extra: &[(&str, &str)]) -> TestApp {
    spawn_inner(cluster, extra, false).await
}

/// Like [`spawn_app_with`], with a recording, fault-injecting proxy in front of the sidecar.
pub async fn spawn_proxied(extra: &[(&str, &str)]) -> TestApp {
    let cluster = Cluster::in_memory().await.unwrap();
    spawn_inner(cluster, extra, true).await
}

async fn spawn_inner(cluster: Cluster, extra: &[(&str, &str)], proxied: bool) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = service_kit::init_tracing("task-api-test");
    }
    let port = free_port();
    let sidecar = cluster
        .sidecar(APP)
        .app_port(Some(port))
        .start()
        .await
        .unwrap();
    let port_text = port.to_string();
    let mut all: Vec<(&str, &str)> = vec![("APP_PORT", port_text.as_str())];
    all.extend_from_slice(extra);
    let settings = settings(&all);
    let proxy = if proxied {
        Some(proxy::Proxy::start(sidecar.http_endpoint()).await)
    } else {
        None
    };
    let endpoint = proxy
        .as_ref()
        .map_or_else(|| sidecar.http_endpoint(), |p| p.url.clone());
    let app = Application::build(settings.clone(), DaprSettings::with_endpoint(endpoint))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    assert!(
        sidecar.wait_ready(Duration::from_secs(10)).await,
        "sidecar ready"
    );
    TestApp {
        cluster,
        sidecar,
        base,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        settings,
        proxy,
        stop: Some(stop),
        server: Some(server),
    }
}

pub struct User {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

impl TestApp {
    pub fn user(&self) -> User {
        let id = Uuid::new_v4();
        let email = format!("u{}@example.com", &id.simple().to_string()[..8]);
        let token =
            task_api::auth::issue_token(&self.settings, id, &email, Duration::from_secs(3600))
                .unwrap();
        User { id, email, token }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn create(&self, user: &User, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/tasks"))
            .bearer_auth(&user.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a task and returns its JSON (asserting 201).
    pub async fn create_ok(&self, user: &User, title: &str) -> Value {
        let response = self.create(user, json!({ "title": title })).await;
        assert_eq!(response.status(), 201, "create {title}");
        response.json().await.unwrap()
    }

    pub async fn get(&self, user: &User, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(
        &self,
        user: &User,
        id: &str,
        body: Value,
        if_match: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .patch(self.url(&format!("/api/tasks/{id}")))
            .bearer_auth(&user.token)
            .json(&body);
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        request.send().await.unwrap()
    }

    /// Published CloudEvents of `topic` whose task id is `task_id`.
    pub fn events_of(&self, topic: &str, task_id: &str) -> Vec<Value> {
        self.cluster
            .published(topic)
            .into_iter()
            .filter(|ce| ce["data"]["data"]["task"]["task_id"] == task_id)
            .collect()
    }

    /// Polls until `n` events of `topic` for `task_id` were published (deadline 10 s).
    pub async fn wait_events(&self, topic: &str, task_id: &str, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events_of(topic, task_id);
            if events.len() >= n {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} {topic} event(s) of {task_id}; got {}",
                events.len()
            );
            let _ = self
                .cluster
                .wait_for_published(
                    topic,
                    self.cluster.published(topic).len() + 1,
                    Duration::from_millis(200),
                )
                .await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.cluster.shutdown().await;
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(response: reqwest::Response, status: u16, slug: &str) -> Value {
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
