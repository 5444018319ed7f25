//! The component files of `deploy/local/redis` load in the sidecar and work end to end (pointed
//! at a private `redis-server` instead of localhost:6379), and `deploy/local/in-memory` loads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_redis;

use serde_json::json;
use std::path::PathBuf;
use support_redis::RedisServer;
use support_redis::app::App;

fn deploy_dir(variant: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/local")
        .join(variant)
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_local_redis_components_work() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(deploy_dir("redis")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.replace("localhost:6379", &server.addr());
            let name = path.file_name().unwrap();
            std::fs::write(dir.path().join(name), text).unwrap();
            copied.push(name.to_string_lossy().into_owned());
        }
    }
    for expected in ["secretstore.yaml", "statestore.yaml", "pubsub.yaml"] {
        assert!(
            copied.iter().any(|c| c == expected),
            "{expected} in {copied:?}"
        );
    }
    let cluster = sidecar_testing::Cluster::from_resources(&[dir.path()])
        .await
        .unwrap();
    let caps = cluster.runtime().capabilities("todo-state");
    assert_eq!(caps, ["ETAG", "TRANSACTIONAL", "TTL"]);

    let audit = App::ok(&["task-created"]).await;
    cluster
        .sidecar("audit-logger")
        .app_port(audit.port)
        .start()
        .await
        .unwrap();
    cluster
        .publish("task-api", "task-created", &json!({"id": "t1"}))
        .await
        .unwrap();
    assert_eq!(audit.wait_for(1).await[0].data(), json!({"id": "t1"}));

    let sc = cluster.sidecar("task-api").start().await.unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/v1.0/state/todo-state", sc.http_endpoint()))
        .json(&json!([{"key": "task:t1", "value": {"title": "x"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        cluster.state_of("task-api", "task:t1").await,
        Some(json!({"title": "x"}))
    );
    let version: String =
        redis::Commands::hget(&mut server.con(), "task-api||task:t1", "version").unwrap();
    assert_eq!(version, "1");
    cluster.shutdown().await;
}

#[tokio::test]
async fn deploy_local_in_memory_components_load() {
    let cluster = sidecar_testing::Cluster::from_resources(&[deploy_dir("in-memory")])
        .await
        .unwrap();
    assert!(cluster.runtime().state_component("todo-state").is_some());
    cluster.shutdown().await;
}
