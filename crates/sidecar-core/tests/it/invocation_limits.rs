//! Service invocation limits: the response size cap (`--max-body-size`) and the per-call timeout
//! (resiliency `targets.apps.<app-id>.timeout`, else the sidecar's default).

use crate::app::{Responder, TestApp};
use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};
use sidecar_core::Resources;
use sidecar_testing::Cluster;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_response_over_the_body_limit_is_an_invoke_error() {
    let cluster = Cluster::in_memory().await.unwrap();
    let responder: Responder = Arc::new(|r| {
        let size = if r.path == "/big" { 4096 } else { 512 };
        (200, "x".repeat(size))
    });
    let target = TestApp::start(json!([]), responder).await;
    cluster
        .sidecar("target")
        .app_port(target.port)
        .start()
        .await
        .unwrap();
    let caller = cluster
        .sidecar("caller")
        .max_body_size(1024)
        .start()
        .await
        .unwrap();
    let url = |m: &str| format!("{}/v1.0/invoke/target/method/{m}", caller.http_endpoint());
    let r = reqwest::get(url("small")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().len(), 512);
    let r = reqwest::get(url("big")).await.unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("stream too large"),
        "{body}"
    );
}

/// An app whose every method answers after `delay`.
async fn slow_app(delay: Duration) -> u16 {
    let router = Router::new()
        .route(
            "/dapr/subscribe",
            axum::routing::get(|| async { axum::Json(json!([])) }),
        )
        .route(
            "/dapr/config",
            axum::routing::get(|| async { StatusCode::NOT_FOUND }),
        )
        .fallback(move || async move {
            tokio::time::sleep(delay).await;
            "late"
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    port
}

#[tokio::test]
async fn an_app_target_timeout_ends_a_slow_invocation() {
    let res = Resources::from_yaml(
        Path::new("resiliency.yaml"),
        r#"
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: { name: invoke-timeouts }
spec:
  policies:
    timeouts:
      quick: 300ms
  targets:
    apps:
      slow: { timeout: quick }
"#,
    )
    .unwrap();
    let cluster = Cluster::from(res).unwrap();
    let port = slow_app(Duration::from_secs(5)).await;
    cluster
        .sidecar("slow")
        .app_port(port)
        .start()
        .await
        .unwrap();
    let caller = cluster.sidecar("caller").start().await.unwrap();
    let started = Instant::now();
    let r = reqwest::get(format!(
        "{}/v1.0/invoke/slow/method/work",
        caller.http_endpoint()
    ))
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("deadline exceeded"),
        "{body}"
    );
}
