//! A fake sidecar over real HTTP that follows the Dapr HTTP contract for the calls this crate
//! makes (status codes, error bodies, ETag headers, Redis etag semantics) and records every
//! request it receives, so tests can assert on what went over the wire.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

mod state;
use state::{bulk, save, transaction};

pub const STORE: &str = "todo-state";
pub const PUBSUB: &str = "todo-pubsub";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// Raw (still percent-encoded) path.
    pub path: String,
    /// Decoded path segments.
    pub segments: Vec<String>,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// A canned response that pre-empts the normal handling of the next request.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Canned {
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: json!({ "errorCode": code, "message": message }).to_string(),
        }
    }
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain",
            body: body.to_owned(),
        }
    }
}

#[derive(Default)]
pub(crate) struct Shared {
    requests: Mutex<Vec<Recorded>>,
    canned: Mutex<VecDeque<Canned>>,
    /// key -> (stored JSON, version)
    pub(crate) store: Mutex<HashMap<String, (Value, u64)>>,
    api_token: Option<String>,
    outbound_unhealthy: AtomicBool,
}

pub struct FakeSidecar {
    pub endpoint: String,
    pub port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSidecar {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    pub async fn start_with(api_token: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, api_token).await
    }

    /// Serves on an already bound listener (to come up on a chosen port).
    pub async fn serve(listener: TcpListener, api_token: Option<&str>) -> Self {
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            api_token: api_token.map(str::to_owned),
            ..Shared::default()
        });
        let app = Router::new().fallback({
            let shared = Arc::clone(&shared);
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = Arc::clone(&shared);
                async move { handle(&shared, method, uri, headers, body) }
            }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            shared,
            stop: Some(stop),
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    pub fn push_canned(&self, canned: Canned) {
        self.shared.canned.lock().unwrap().push_back(canned);
    }

    pub fn set_outbound_healthy(&self, healthy: bool) {
        self.shared
            .outbound_unhealthy
            .store(!healthy, Ordering::SeqCst);
    }

    pub fn stored(&self, key: &str) -> Option<(Value, u64)> {
        self.shared.store.lock().unwrap().get(key).cloned()
    }

    pub fn put(&self, key: &str, value: Value) -> u64 {
        let mut store = self.shared.store.lock().unwrap();
        let version = store.get(key).map_or(0, |(_, v)| *v) + 1;
        store.insert(key.to_owned(), (value, version));
        version
    }

    /// Waits (polling, with a deadline) until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize, deadline: Duration) -> Vec<Recorded> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let requests = self.requests();
            if requests.len() >= n || tokio::time::Instant::now() >= until {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A local port with nothing listening on it.
pub async fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = segment.get(i + 1..i + 3).filter(|_| bytes[i] == b'%');
        if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

pub(crate) fn error(status: u16, code: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        json!({ "errorCode": code, "message": message }).to_string(),
    )
        .into_response()
}

pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn handle(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let query: Vec<(String, String)> = uri.query().map(url_pairs).unwrap_or_default();
    shared.requests.lock().unwrap().push(Recorded {
        method: method.clone(),
        path: path.clone(),
        segments: segments.clone(),
        query,
        headers: headers.clone(),
        body: body.clone(),
    });

    let is_health = path.starts_with("/v1.0/healthz");
    if let (Some(expected), false) = (&shared.api_token, is_health) {
        let given = headers.get("dapr-api-token").and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return (StatusCode::UNAUTHORIZED, "invalid api token").into_response();
        }
    }
    if let Some(canned) = shared.canned.lock().unwrap().pop_front() {
        return (
            StatusCode::from_u16(canned.status).unwrap(),
            [("content-type", canned.content_type)],
            canned.body,
        )
            .into_response();
    }

    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["v1.0", "healthz", "outbound"]) => {
            if shared.outbound_unhealthy.load(Ordering::SeqCst) {
                error(
                    500,
                    "ERR_OUTBOUND_HEALTH_NOT_READY",
                    "dapr outbound is not ready",
                )
            } else {
                no_content()
            }
        }
        // The app channel never comes up in these tests: waiting on this would hang.
        ("GET", ["v1.0", "healthz"]) => error(500, "ERR_HEALTH_NOT_READY", "dapr is not ready"),
        ("POST" | "PUT", ["v1.0", "publish", pubsub, topic @ ..]) if !topic.is_empty() => {
            if *pubsub != PUBSUB {
                return error(
                    404,
                    "ERR_PUBSUB_NOT_FOUND",
                    &format!("pubsub {pubsub} not found"),
                );
            }
            no_content()
        }
        (_, ["v1.0", "state", store, ..]) if *store != STORE => error(
            400,
            "ERR_STATE_STORE_NOT_FOUND",
            &format!("state store {store} is not found"),
        ),
        ("POST" | "PUT", ["v1.0", "state", _]) => save(shared, &body),
        ("POST" | "PUT", ["v1.0", "state", _, "bulk"]) => bulk(shared, &body),
        ("POST" | "PUT", ["v1.0", "state", _, "transaction"]) => transaction(shared, &body),
        ("GET", ["v1.0", "state", _, key]) => match shared.store.lock().unwrap().get(*key) {
            Some((value, version)) => (
                StatusCode::OK,
                [
                    ("content-type", "application/json".to_owned()),
                    ("etag", version.to_string()),
                ],
                value.to_string(),
            )
                .into_response(),
            None => no_content(),
        },
        ("DELETE", ["v1.0", "state", _, key]) => {
            let etag = headers.get("if-match").and_then(|v| v.to_str().ok());
            let mut store = shared.store.lock().unwrap();
            if let (Some(etag), Some((_, version))) = (etag, store.get(*key))
                && etag != version.to_string()
            {
                return error(409, "ERR_STATE_DELETE", "possible etag mismatch");
            }
            store.remove(*key);
            no_content()
        }
        _ => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}
