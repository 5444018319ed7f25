//! A recording, fault-injecting HTTP proxy between the app and its sidecar.
//!
//! It records every request line (so tests can check publish metadata such as the partition
//! key, which the broker log does not keep), can make the next state transactions fail
//! completely or partially, the way a Redis transaction fails: some operations applied, the
//! others not, and daprd answering 500 `ERR_STATE_TRANSACTION`; and can hold publishes, so that
//! a test can kill the app between a state commit and the publish that follows it.
//! [`crate::AppBuilder::proxied`] puts one in front of a service's sidecar.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What to do with one transaction.
#[derive(Debug, Clone)]
pub enum TxnFault {
    /// Apply nothing; answer 500.
    Fail,
    /// Apply only the operations whose key starts with this prefix; answer 500.
    ApplyOnly(&'static str),
    /// Apply every operation except those whose key starts with this prefix; answer 500.
    Skip(&'static str),
    /// Answer 504 at once, with no word from the store, and apply the whole transaction this
    /// long afterwards: a sidecar that timed out on a write it still carries out.
    Late(Duration),
    /// Forward the whole transaction this long after it arrived, and answer what the sidecar
    /// answers: a slow store.
    Slow(Duration),
}

#[derive(Debug, Default)]
struct Inner {
    faults: VecDeque<TxnFault>,
    /// Plain saves (not transactions) of a key with this prefix to answer with 500, and how many.
    failing_saves: Option<(&'static str, usize)>,
    /// Deletes of a key with this prefix to answer with 500, and how many.
    failing_deletes: Option<(&'static str, usize)>,
    requests: Vec<String>,
}

/// Whether publishes are held, and the request lines of those held so far.
#[derive(Debug, Default)]
struct Hold {
    on: bool,
    held: Vec<String>,
}

/// The proxy: `url` is what the app is given as its sidecar's address.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub url: String,
    target: String,
    client: reqwest::Client,
    inner: Arc<Mutex<Inner>>,
    hold: Arc<tokio::sync::watch::Sender<Hold>>,
}

impl Proxy {
    /// Starts a proxy in front of the sidecar at `target`.
    pub async fn start(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let proxy = Proxy {
            url,
            target,
            client: reqwest::Client::new(),
            inner: Arc::default(),
            hold: Arc::new(tokio::sync::watch::Sender::new(Hold::default())),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        proxy
    }

    /// Applies `fault` to the next state transaction that has none yet.
    pub fn fault_next_transaction(&self, fault: TxnFault) {
        self.inner.lock().unwrap().faults.push_back(fault);
    }

    /// Answers the next `n` plain saves (`POST /v1.0/state/{store}`, not transactions) that
    /// write a key starting with `prefix` with 500 `ERR_STATE_SAVE`, without forwarding them:
    /// the store failing the write that follows a partial transaction.
    pub fn fail_next_saves(&self, prefix: &'static str, n: usize) {
        self.inner.lock().unwrap().failing_saves = Some((prefix, n));
    }

    /// Answers the next `n` deletes (`DELETE /v1.0/state/{store}/{key}`) of a key starting with
    /// `prefix` with 500 `ERR_STATE_DELETE`, without forwarding them.
    pub fn fail_next_deletes(&self, prefix: &'static str, n: usize) {
        self.inner.lock().unwrap().failing_deletes = Some((prefix, n));
    }

    /// Request lines seen so far (`METHOD /path?query`).
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// From now on publishes are held: never forwarded, and answered only by
    /// [`Proxy::release_publishes`].
    pub fn hold_publishes(&self) {
        self.hold.send_modify(|hold| hold.on = true);
    }

    /// Answers the held publishes with 503 (they never reach the sidecar) and lets later ones
    /// through.
    pub fn release_publishes(&self) {
        self.hold.send_modify(|hold| hold.on = false);
    }

    /// Waits until a publish is held and returns its request line.
    pub async fn wait_for_held_publish(&self, timeout: Duration) -> String {
        let mut hold = self.hold.subscribe();
        let held = tokio::time::timeout(timeout, hold.wait_for(|hold| !hold.held.is_empty()))
            .await
            .expect("no publish reached the proxy in time")
            .unwrap();
        held.held[0].clone()
    }
}

/// Holds a publish while holding is on; returns whether it was held (and is now answered).
async fn held(proxy: &Proxy, line: &str) -> bool {
    let mut hold = proxy.hold.subscribe();
    let holding = proxy.hold.send_if_modified(|hold| {
        if hold.on {
            hold.held.push(line.to_owned());
        }
        hold.on
    });
    if holding {
        let _ = hold.wait_for(|hold| !hold.on).await;
    }
    holding
}

async fn send(
    proxy: &Proxy,
    method: reqwest::Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut request = proxy
        .client
        .request(method, format!("{}{path}", proxy.target));
    for name in ["content-type", "traceparent", "if-match", "dapr-api-token"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    let response = request.body(body).send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let mut out = Response::builder().status(status);
    for name in ["content-type", "etag"] {
        if let Some(value) = response.headers().get(name) {
            out = out.header(name, value.as_bytes());
        }
    }
    out.body(Body::from(response.bytes().await.unwrap()))
        .unwrap()
}

fn failed() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [("content-type", "application/json")],
        json!({"errorCode": "ERR_STATE_TRANSACTION",
               "message": "error while executing state transaction: injected"})
        .to_string(),
    )
        .into_response()
}

fn delete_failed() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [("content-type", "application/json")],
        json!({"errorCode": "ERR_STATE_DELETE",
               "message": "failed deleting state with key: injected"})
        .to_string(),
    )
        .into_response()
}

/// The key a `DELETE /v1.0/state/{store}/{key}` names.
fn deleted_key<'a>(method: &reqwest::Method, path: &'a str) -> Option<&'a str> {
    let path = path.split('?').next().unwrap_or_default();
    let rest = path.strip_prefix("/v1.0/state/")?;
    (method == reqwest::Method::DELETE)
        .then(|| rest.split_once('/').map(|(_, key)| key))
        .flatten()
}

fn save_failed() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [("content-type", "application/json")],
        json!({"errorCode": "ERR_STATE_SAVE",
               "message": "failed saving state in state store todo-state: injected"})
        .to_string(),
    )
        .into_response()
}

/// `POST /v1.0/state/{store}`: a save, not a bulk get or a transaction.
fn is_plain_save(method: &reqwest::Method, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    method == reqwest::Method::POST
        && path
            .strip_prefix("/v1.0/state/")
            .is_some_and(|rest| !rest.contains('/'))
}

fn saves_key_with(body: &[u8], prefix: &str) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|items| {
        items.as_array().is_some_and(|items| {
            items
                .iter()
                .any(|item| item["key"].as_str().is_some_and(|k| k.starts_with(prefix)))
        })
    })
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes()).unwrap();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    let line = format!("{method} {path}");
    let fault = {
        let mut inner = proxy.inner.lock().unwrap();
        inner.requests.push(line.clone());
        if path.ends_with("/transaction") {
            inner.faults.pop_front()
        } else {
            if is_plain_save(&method, &path)
                && let Some((prefix, left)) = inner.failing_saves.as_mut()
                && *left > 0
                && saves_key_with(&body, prefix)
            {
                *left -= 1;
                return save_failed();
            }
            if let Some(key) = deleted_key(&method, &path)
                && let Some((prefix, left)) = inner.failing_deletes.as_mut()
                && *left > 0
                && key.starts_with(*prefix)
            {
                *left -= 1;
                return delete_failed();
            }
            None
        }
    };
    if path.starts_with("/v1.0/publish/") && held(&proxy, &line).await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "held and dropped by the proxy",
        )
            .into_response();
    }
    let Some(fault) = fault else {
        return send(&proxy, method, &path, &headers, body).await;
    };
    let keep: Box<dyn Fn(&str) -> bool + Send> = match fault {
        TxnFault::Fail => return failed(),
        TxnFault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            return send(&proxy, method, &path, &headers, body).await;
        }
        TxnFault::Late(delay) => {
            let proxy = proxy.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let applied = send(&proxy, method, &path, &headers, body).await;
                assert!(applied.status().is_success(), "late transaction applied");
            });
            return (
                StatusCode::GATEWAY_TIMEOUT,
                "no answer from the sidecar in time",
            )
                .into_response();
        }
        TxnFault::ApplyOnly(prefix) => Box::new(move |key| key.starts_with(prefix)),
        TxnFault::Skip(prefix) => Box::new(move |key| !key.starts_with(prefix)),
    };
    let mut txn: Value = serde_json::from_slice(&body).unwrap();
    let ops: Vec<Value> = txn["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| keep(op["request"]["key"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    txn["operations"] = Value::Array(ops);
    let applied = send(
        &proxy,
        method,
        &path,
        &headers,
        Bytes::from(txn.to_string()),
    )
    .await;
    assert!(applied.status().is_success(), "partial transaction applied");
    failed()
}
