//! Secret stores (`secretstores.local.file`, `secretstores.local.env`), `secretKeyRef` in
//! component metadata (here: the password of a Redis that requires one) and the secrets API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_redis;

use serde_json::{Value, json};
use support_redis::RedisServer;

const PASSWORD: &str = "s3cret-pw";

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A file store, an env store, and `todo-state` whose password comes from the file store.
fn resources(dir: &std::path::Path, server: &RedisServer) {
    let secrets = dir.join("secrets.json");
    std::fs::write(
        &secrets,
        json!({"redis": {"password": PASSWORD}, "plain": "v", "list": ["a", "b"]}).to_string(),
    )
    .unwrap();
    write(
        dir,
        "0-secrets.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: local-secrets\nspec:\n  type: secretstores.local.file\n  version: v1\n  metadata:\n  - name: secretsFile\n    value: {}\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: env-secrets\nspec:\n  type: secretstores.local.env\n  version: v1\n",
            secrets.display()
        ),
    );
    // The state store is listed before nothing in particular: secret stores load first anyway.
    write(
        dir,
        "a-state.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-state\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: {}\n  - name: redisPassword\n    secretKeyRef:\n      name: \"redis:password\"\n      key: \"redis:password\"\nauth:\n  secretStore: local-secrets\n",
            server.addr()
        ),
    );
}

async fn get(url: String) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_key_ref_resolves_the_redis_password() {
    let server = RedisServer::start_with_password(Some(PASSWORD));
    let dir = tempfile::tempdir().unwrap();
    resources(dir.path(), &server);
    let cluster = sidecar_testing::Cluster::from_resources(&[dir.path()])
        .await
        .unwrap();
    let sc = cluster.sidecar("task-api").start().await.unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/v1.0/state/todo-state", sc.http_endpoint()))
        .json(&json!([{"key": "k", "value": 1}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let stored: String = redis::Commands::hget(&mut server.con(), "task-api||k", "data").unwrap();
    assert_eq!(stored, "1");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_or_missing_secret_fails_the_load_naming_file_and_field() {
    let server = RedisServer::start_with_password(Some(PASSWORD));
    let dir = tempfile::tempdir().unwrap();
    resources(dir.path(), &server);
    // Unknown secret name.
    let state = std::fs::read_to_string(dir.path().join("a-state.yaml")).unwrap();
    write(
        dir.path(),
        "a-state.yaml",
        &state.replace("name: \"redis:password\"", "name: nope"),
    );
    let err = sidecar_testing::Cluster::from_resources(&[dir.path()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("a-state.yaml"), "{err}");
    assert!(
        err.contains("spec.metadata.redisPassword.secretKeyRef"),
        "{err}"
    );
    assert!(err.contains("secret nope not found"), "{err}");

    // Unknown secret store.
    write(
        dir.path(),
        "a-state.yaml",
        &state.replace("secretStore: local-secrets", "secretStore: vault"),
    );
    let err = sidecar_testing::Cluster::from_resources(&[dir.path()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`vault`") && err.contains("not defined"),
        "{err}"
    );

    // The right secret under a wrong password source: Redis refuses, the load fails.
    write(
        dir.path(),
        "a-state.yaml",
        &state.replace("\"redis:password\"", "plain"),
    );
    let err = sidecar_testing::Cluster::from_resources(&[dir.path()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a-state.yaml") && err.contains("redisHost"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_api_statuses_and_bodies() {
    let server = RedisServer::start_with_password(Some(PASSWORD));
    let dir = tempfile::tempdir().unwrap();
    resources(dir.path(), &server);
    let cluster = sidecar_testing::Cluster::from_resources(&[dir.path()])
        .await
        .unwrap();
    let base = cluster
        .sidecar("task-api")
        .start()
        .await
        .unwrap()
        .http_endpoint();

    let (s, b) = get(format!("{base}/v1.0/secrets/local-secrets/plain")).await;
    assert_eq!((s, b), (200, json!({"plain": "v"})));
    let (s, b) = get(format!("{base}/v1.0/secrets/local-secrets/list:1")).await;
    assert_eq!((s, b), (200, json!({"list:1": "b"})));
    let (s, b) = get(format!("{base}/v1.0/secrets/local-secrets/bulk")).await;
    assert_eq!(s, 200);
    assert_eq!(b["plain"], json!({"plain": "v"}));
    assert_eq!(b["redis:password"], json!({"redis:password": PASSWORD}));

    let (s, b) = get(format!("{base}/v1.0/secrets/local-secrets/missing")).await;
    assert_eq!((s, b["errorCode"].as_str()), (500, Some("ERR_SECRET_GET")));
    let (s, b) = get(format!("{base}/v1.0/secrets/vault/x")).await;
    assert_eq!(
        (s, b["errorCode"].as_str()),
        (401, Some("ERR_SECRET_STORE_NOT_FOUND"))
    );
    assert_eq!(b["message"], "failed finding secret store with key vault");

    // The env store reads the sidecar's environment, but never DAPR_* variables.
    let path = std::env::var("PATH").unwrap();
    let (s, b) = get(format!("{base}/v1.0/secrets/env-secrets/PATH")).await;
    assert_eq!((s, b), (200, json!({"PATH": path})));
    let (s, b) = get(format!("{base}/v1.0/secrets/env-secrets/DAPR_API_TOKEN")).await;
    assert_eq!((s, b), (200, json!({"DAPR_API_TOKEN": ""})));
    let (s, b) = get(format!("{base}/v1.0/secrets/env-secrets/bulk")).await;
    assert_eq!(s, 200);
    assert_eq!(b["PATH"], json!({"PATH": path}));
    assert!(
        b.as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("DAPR_"))
    );
    cluster.shutdown().await;

    // Without any secret store: 500 ERR_SECRET_STORES_NOT_CONFIGURED.
    let plain = sidecar_testing::Cluster::in_memory().await.unwrap();
    let base = plain
        .sidecar("task-api")
        .start()
        .await
        .unwrap()
        .http_endpoint();
    let (s, b) = get(format!("{base}/v1.0/secrets/local-secrets/plain")).await;
    assert_eq!(
        (s, b["errorCode"].as_str()),
        (500, Some("ERR_SECRET_STORES_NOT_CONFIGURED"))
    );
    plain.shutdown().await;
}
