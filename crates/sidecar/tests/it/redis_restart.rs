//! The components survive a restart of Redis itself: the shared connection reconnects, the stream
//! reader reconnects and recreates its consumer group (the restarted server is empty), and
//! publishing, delivery and state work again without restarting the sidecars.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_redis;

use serde_json::json;
use std::time::Duration;
use support_redis::RedisServer;
use support_redis::app::App;

/// POSTs until the answer is 204 (10 s deadline); the first calls after the restart may fail
/// while the connection is re-established.
async fn post_until_204(url: &str, body: serde_json::Value) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = http.post(url).json(&body).send().await.unwrap().status();
        if status.as_u16() == 204 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {status} after Redis restarted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecars_recover_after_redis_restarts() {
    let mut server = RedisServer::start();
    let (cluster, _dir) = support_redis::cluster(&server, &[]).await;
    let app = App::ok(&["task-created"]).await;
    cluster
        .sidecar("audit-logger")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    let publisher = cluster
        .sidecar("task-api")
        .start()
        .await
        .unwrap()
        .http_endpoint();
    let publish_url = format!("{publisher}/v1.0/publish/todo-pubsub/task-created");

    post_until_204(&publish_url, json!({"n": 1})).await;
    assert_eq!(app.wait_for(1).await[0].data(), json!({"n": 1}));

    server.restart();

    post_until_204(&publish_url, json!({"n": 2})).await;
    let got = app.wait_for(2).await;
    assert_eq!(got[1].data(), json!({"n": 2}));
    post_until_204(
        &format!("{publisher}/v1.0/state/todo-state"),
        json!([{"key": "k", "value": 1}]),
    )
    .await;
    assert_eq!(cluster.state_of("task-api", "k").await, Some(json!(1)));
    cluster.shutdown().await;
}
