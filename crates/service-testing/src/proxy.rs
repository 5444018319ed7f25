//! A recording, fault-injecting HTTP proxy between the app and its sidecar.
//!
//! It records every request line (so tests can check publish metadata such as the partition
//! key, which the broker log does not keep) and can make the next state transactions fail
//! completely or partially, the way a Redis transaction fails: some operations applied, the
//! others not, and daprd answering 500 `ERR_STATE_TRANSACTION`. [`crate::AppBuilder::proxied`] puts one in front
//! of a service's sidecar.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

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
}

#[derive(Debug, Default)]
struct Inner {
    faults: VecDeque<TxnFault>,
    requests: Vec<String>,
}

/// The proxy: `url` is what the app is given as its sidecar's address.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub url: String,
    target: String,
    client: reqwest::Client,
    inner: Arc<Mutex<Inner>>,
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

    /// Request lines seen so far (`METHOD /path?query`).
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }
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
    let fault = {
        let mut inner = proxy.inner.lock().unwrap();
        inner.requests.push(format!("{method} {path}"));
        if path.ends_with("/transaction") {
            inner.faults.pop_front()
        } else {
            None
        }
    };
    let Some(fault) = fault else {
        return send(&proxy, method, &path, &headers, body).await;
    };
    let keep: Box<dyn Fn(&str) -> bool + Send> = match fault {
        TxnFault::Fail => return failed(),
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
