//! CEL routing and raw payloads over real HTTP.

use crate::app::{TestApp, ok, publish};
use serde_json::json;
use sidecar_testing::Cluster;

#[tokio::test]
async fn cel_rules_pick_the_route_and_default_catches_the_rest() {
    let cluster = Cluster::in_memory().await.unwrap();
    let subs = json!([{
        "pubsubname": "todo-pubsub", "topic": "t", "route": "/ignored",
        "routes": {
            "rules": [
                {"match": "event.type == \"urgent\"", "path": "/urgent"},
                {"match": "event.data.priority > 3", "path": "/high"}
            ],
            "default": "/normal"
        }
    }]);
    let app = TestApp::start(subs, ok()).await;
    let sc = cluster
        .sidecar("w")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    let ep = sc.http_endpoint();
    let ct = "application/json";
    publish(
        &ep,
        "t",
        "?metadata.cloudevent.type=urgent",
        ct,
        r#"{"priority":1}"#,
    )
    .await;
    publish(&ep, "t", "", ct, r#"{"priority":9}"#).await;
    publish(&ep, "t", "", ct, r#"{"priority":1}"#).await;
    let got = app.wait_for(3).await;
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/high", "/normal", "/urgent"]);
    let meta: serde_json::Value = reqwest::get(format!("{ep}/v1.0/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sub = &meta["subscriptions"][0];
    assert_eq!(sub["type"], "PROGRAMMATIC");
    assert_eq!(sub["rules"][0]["match"], "event.type == \"urgent\"");
    assert_eq!(sub["rules"][2], json!({"path": "/normal"}));
}

#[tokio::test]
async fn raw_payloads_are_published_unwrapped_and_rewrapped_for_raw_subscribers() {
    let cluster = Cluster::in_memory().await.unwrap();
    let subs = json!([{"pubsubname":"todo-pubsub","topic":"raw","route":"/raw","metadata":{"rawPayload":"true"}}]);
    let app = TestApp::start(subs, ok()).await;
    let sc = cluster
        .sidecar("w")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    let r = publish(
        &sc.http_endpoint(),
        "raw",
        "?metadata.rawPayload=true",
        "text/plain",
        "hello",
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(cluster.published("raw"), vec![json!("hello")]);
    let got = app.wait_for(1).await;
    let ce = got[0].json();
    assert_eq!(ce["data_base64"], "aGVsbG8=");
    assert_eq!(ce["datacontenttype"], "application/octet-stream");
    assert_eq!(ce["source"], "Dapr");
    let bad = publish(
        &sc.http_endpoint(),
        "raw",
        "?metadata.rawPayload=yes",
        "text/plain",
        "x",
    )
    .await;
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_PUBSUB_REQUEST_METADATA");
}

#[tokio::test]
async fn publish_errors_come_in_daprd_order() {
    let res = sidecar_core::Resources::from_yaml(
        std::path::Path::new("p.yaml"),
        "kind: Component\nmetadata: {name: todo-pubsub}\nspec:\n  type: pubsub.in-memory\n  version: v1\n  metadata: [{name: allowedTopics, value: ok}]\n",
    )
    .unwrap();
    let cluster = Cluster::from(res).unwrap();
    let sc = cluster.sidecar("a").start().await.unwrap();
    let ep = sc.http_endpoint();
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        (status, body["errorCode"].as_str().unwrap().to_string())
    };
    // Metadata and envelope errors are reported before the topic check.
    let r = publish(
        &ep,
        "blocked",
        "?metadata.rawPayload=maybe",
        "text/plain",
        "x",
    )
    .await;
    assert_eq!(code(r).await, (400, "ERR_PUBSUB_REQUEST_METADATA".into()));
    let r = publish(&ep, "blocked", "", "application/cloudevents+json", "[1]").await;
    assert_eq!(code(r).await, (500, "ERR_PUBSUB_CLOUD_EVENTS_SER".into()));
    let r = publish(&ep, "blocked", "", "application/cloudevents+json", "{}").await;
    assert_eq!(code(r).await, (403, "ERR_PUBSUB_FORBIDDEN".into()));
    let r = publish(
        &ep,
        "ok",
        "",
        "application/cloudevents+json",
        r#"{"id":"own"}"#,
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(cluster.published("ok")[0]["id"], "own");
}

/// An app whose `/dapr/subscribe` answers `status` with `body`; deliveries are counted.
async fn odd_app(
    status: u16,
    body: &'static str,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::http::StatusCode;
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new()
        .route(
            "/dapr/subscribe",
            axum::routing::get(
                move || async move { (StatusCode::from_u16(status).unwrap(), body) },
            ),
        )
        .fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                StatusCode::OK
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (port, hits)
}

#[tokio::test]
async fn only_a_200_subscribe_answer_is_decoded() {
    let sub = r#"[{"pubsubname":"todo-pubsub","topic":"t","route":"/e"}]"#;
    for (status, body, expected) in [
        (200, sub, 1usize),
        (404, "", 0),
        (500, sub, 0),
        (204, "", 0),
    ] {
        let cluster = Cluster::in_memory().await.unwrap();
        let (port, _) = odd_app(status, body).await;
        let sc = cluster.sidecar("w").app_port(port).start().await.unwrap();
        let meta: serde_json::Value = reqwest::get(format!("{}/v1.0/metadata", sc.http_endpoint()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let subs = meta["subscriptions"].as_array().map_or(0, Vec::len);
        assert_eq!(subs, expected, "status {status}");
    }
}
