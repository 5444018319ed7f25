//! A scriptable subscriber app.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// One request the app received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// Decides the answer to a delivery: (status, body).
pub type Responder = Arc<dyn Fn(&Received) -> (u16, String) + Send + Sync>;

struct Inner {
    subscriptions: Value,
    responder: Responder,
    received: Mutex<Vec<Received>>,
    notify: Notify,
}

pub struct TestApp {
    pub port: u16,
    inner: Arc<Inner>,
}

pub fn ok() -> Responder {
    Arc::new(|_| (200, String::new()))
}

async fn subscribe(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> impl IntoResponse {
    inner.received.lock().unwrap().push(Received {
        path: "/dapr/subscribe".into(),
        headers,
        body: Bytes::new(),
    });
    inner.notify.notify_waiters();
    axum::Json(inner.subscriptions.clone())
}

async fn any(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let r = Received {
        path: uri.path().to_string(),
        headers,
        body,
    };
    let (status, body) = (inner.responder)(&r);
    inner.received.lock().unwrap().push(r);
    inner.notify.notify_waiters();
    (StatusCode::from_u16(status).unwrap(), body)
}

impl TestApp {
    /// Starts the app on 127.0.0.1:0 (or on `port`).
    pub async fn start_on(port: u16, subscriptions: Value, responder: Responder) -> TestApp {
        let inner = Arc::new(Inner {
            subscriptions,
            responder,
            received: Mutex::new(Vec::new()),
            notify: Notify::new(),
        });
        let router = Router::new()
            .route("/dapr/subscribe", axum::routing::get(subscribe))
            .route(
                "/dapr/config",
                axum::routing::get(|| async { StatusCode::NOT_FOUND }),
            )
            .fallback(any)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router).await });
        TestApp { port, inner }
    }

    pub async fn start(subscriptions: Value, responder: Responder) -> TestApp {
        Self::start_on(0, subscriptions, responder).await
    }

    /// Everything received except `/dapr/subscribe`.
    pub fn deliveries(&self) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.path != "/dapr/subscribe" && r.path != "/dapr/config")
            .collect()
    }

    pub fn all(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// Waits until `pred` holds over the deliveries (deadline 10 s).
    pub async fn wait_until(&self, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let d = self.deliveries();
            if pred(&d) {
                return d;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "condition not reached; deliveries: {:#?}",
                    self.deliveries()
                );
            }
        }
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        self.wait_until(|d| d.len() >= n).await
    }
}

/// One programmatic subscription entry.
pub fn sub(topic: &str, route: &str) -> Value {
    serde_json::json!({"pubsubname": "todo-pubsub", "topic": topic, "route": route})
}

/// Publishes through a sidecar's HTTP API.
pub async fn publish(
    endpoint: &str,
    topic: &str,
    query: &str,
    content_type: &str,
    body: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "{endpoint}/v1.0/publish/todo-pubsub/{topic}{query}"
        ))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}
