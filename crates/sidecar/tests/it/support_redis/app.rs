//! A subscriber app: answers `/dapr/subscribe` with a fixed list and every delivery with a
//! status chosen per delivery.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: std::time::Instant,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    /// CloudEvent `data`.
    pub fn data(&self) -> Value {
        self.json()["data"].clone()
    }
}

/// Status for the n-th (0-based) delivery.
pub type Policy = Arc<dyn Fn(usize, &Delivery) -> u16 + Send + Sync>;

struct Inner {
    subscriptions: Value,
    policy: Policy,
    deliveries: Mutex<Vec<Delivery>>,
    notify: Notify,
}

pub struct App {
    pub port: u16,
    inner: Arc<Inner>,
}

async fn subscribe(State(inner): State<Arc<Inner>>) -> axum::Json<Value> {
    axum::Json(inner.subscriptions.clone())
}

async fn deliver(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let d = Delivery {
        path: uri.path().to_string(),
        headers,
        body,
        at: std::time::Instant::now(),
    };
    let status = {
        let mut all = inner.deliveries.lock().unwrap();
        let status = (inner.policy)(all.len(), &d);
        all.push(d);
        status
    };
    inner.notify.notify_waiters();
    StatusCode::from_u16(status).unwrap()
}

impl App {
    /// Subscribes to `topics` on `todo-pubsub` (route `/events/<topic>`).
    pub async fn start(topics: &[&str], policy: Policy) -> App {
        let subscriptions: Vec<Value> = topics
            .iter()
            .map(|t| serde_json::json!({"pubsubname": "todo-pubsub", "topic": t, "route": format!("/events/{t}")}))
            .collect();
        let inner = Arc::new(Inner {
            subscriptions: Value::Array(subscriptions),
            policy,
            deliveries: Mutex::new(Vec::new()),
            notify: Notify::new(),
        });
        let router = Router::new()
            .route("/dapr/subscribe", axum::routing::get(subscribe))
            .route(
                "/dapr/config",
                axum::routing::get(|| async { StatusCode::NOT_FOUND }),
            )
            .fallback(deliver)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router).await });
        App { port, inner }
    }

    /// Always 200.
    pub async fn ok(topics: &[&str]) -> App {
        Self::start(topics, Arc::new(|_, _| 200)).await
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.deliveries.lock().unwrap().clone()
    }

    /// Waits (10 s deadline) until at least `n` deliveries arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        self.wait_for_within(n, Duration::from_secs(10)).await
    }

    pub async fn wait_for_within(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let d = self.deliveries();
            if d.len() >= n {
                return d;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("expected {n} deliveries, got {}: {:#?}", d.len(), d);
            }
        }
    }
}
