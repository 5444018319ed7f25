//! `state.redis` through the sidecar's HTTP API against a private `redis-server`: the stored
//! layout is the one daprd reads and writes, and the ETag / first-write / TTL / transaction rules
//! are daprd's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_redis;

use redis::Commands;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use support_redis::RedisServer;

struct Env {
    server: RedisServer,
    base: String,
    http: reqwest::Client,
    cluster: sidecar_testing::Cluster,
    _dir: tempfile::TempDir,
}

/// A sidecar for `task-api` over `todo-state` (and a `ttl-state` store with a component TTL).
async fn env() -> Env {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    support_redis::write_components(dir.path(), &server, &[]);
    std::fs::write(
        dir.path().join("ttl-state.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ttl-state\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: {}\n  - name: ttlInSeconds\n    value: \"50\"\n  - name: keyPrefix\n    value: none\n",
            server.addr()
        ),
    )
    .unwrap();
    let cluster = sidecar_testing::Cluster::from_resources(&[dir.path()])
        .await
        .unwrap();
    let sc = cluster.sidecar("task-api").start().await.unwrap();
    Env {
        base: sc.http_endpoint(),
        server,
        http: reqwest::Client::new(),
        cluster,
        _dir: dir,
    }
}

impl Env {
    async fn save(&self, items: Value) -> (u16, Value) {
        self.save_to("todo-state", items).await
    }

    async fn save_to(&self, store: &str, items: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1.0/state/{store}", self.base))
            .json(&items)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// (status, etag header, body)
    async fn get(&self, key: &str) -> (u16, Option<String>, String) {
        let r = self
            .http
            .get(format!("{}/v1.0/state/todo-state/{key}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let etag = r
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string());
        (status, etag, r.text().await.unwrap())
    }

    async fn delete(&self, key: &str, etag: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .delete(format!("{}/v1.0/state/todo-state/{key}", self.base));
        if let Some(e) = etag {
            req = req.header("if-match", e);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn transact(&self, ops: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1.0/state/todo-state/transaction", self.base))
            .json(&json!({ "operations": ops }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    fn hash(&self, key: &str) -> HashMap<String, String> {
        self.server.con().hgetall(key).unwrap()
    }
}

fn code(body: &Value) -> &str {
    body["errorCode"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_writes_the_hash_layout_daprd_reads() {
    let env = env().await;
    let (s, _) = env
        .save(json!([{"key": "task:1", "value": {"title": "write tests", "n": 1}}]))
        .await;
    assert_eq!(s, 204);

    let mut con = env.server.con();
    let kind: String = redis::cmd("TYPE")
        .arg("task-api||task:1")
        .query(&mut con)
        .unwrap();
    assert_eq!(kind, "hash");
    let h = env.hash("task-api||task:1");
    let mut fields: Vec<&str> = h.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(
        fields,
        ["data", "version"],
        "no first-write marker without first-write"
    );
    assert_eq!(h["version"], "1");
    let data: Value = serde_json::from_str(&h["data"]).unwrap();
    assert_eq!(data, json!({"title": "write tests", "n": 1}));

    // A string value is stored as its JSON encoding, quotes included.
    env.save(json!([{"key": "s", "value": "x"}])).await;
    assert_eq!(env.hash("task-api||s")["data"], "\"x\"");

    // Every write bumps the version; first-write leaves the marker daprd checks.
    env.save(json!([{"key": "task:1", "value": 2}])).await;
    assert_eq!(env.hash("task-api||task:1")["version"], "2");
    env.save(json!([{"key": "fw", "value": 1, "options": {"concurrency": "first-write"}}]))
        .await;
    let fw = env.hash("task-api||fw");
    assert_eq!(
        (fw["first-write"].as_str(), fw["version"].as_str()),
        ("0", "1")
    );

    // The harness sees the same keys.
    let keys = env.cluster.state_keys("task-api").await;
    assert_eq!(keys, ["fw", "s", "task:1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn values_written_like_daprd_read_back_with_their_etag() {
    let env = env().await;
    let mut con = env.server.con();
    let _: () = con
        .hset_multiple(
            "task-api||task:9",
            &[("data", r#"{"title":"from daprd"}"#), ("version", "7")],
        )
        .unwrap();
    let (s, etag, body) = env.get("task:9").await;
    assert_eq!((s, etag.as_deref()), (200, Some("7")));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"title": "from daprd"})
    );

    // Saving with that etag continues daprd's version sequence.
    let (s, _) = env
        .save(json!([{"key": "task:9", "value": {"title": "edited"}, "etag": "7"}]))
        .await;
    assert_eq!(s, 204);
    assert_eq!(env.hash("task-api||task:9")["version"], "8");

    // A plain string key (older layout) reads through GET, without an ETag.
    let _: () = con.set("task-api||legacy", r#"{"old":true}"#).unwrap();
    let (s, etag, body) = env.get("legacy").await;
    assert_eq!((s, etag, body.as_str()), (200, None, r#"{"old":true}"#));
    // ... and a save replaces it with a hash.
    env.save(json!([{"key": "legacy", "value": 1}])).await;
    assert_eq!(env.hash("task-api||legacy")["version"], "1");

    // A hash without `version` is an error, as in daprd.
    let _: () = con.hset("task-api||broken", "data", "1").unwrap();
    let r = env
        .http
        .get(format!("{}/v1.0/state/todo-state/broken", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert_eq!(code(&r.json().await.unwrap()), "ERR_STATE_GET");

    // Missing keys: 204, never 404.
    assert_eq!(env.get("nothing").await.0, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn etag_and_first_write_matrix() {
    let env = env().await;
    // Save with an etag on an absent key creates version 1 (Redis semantics).
    assert_eq!(
        env.save(json!([{"key": "k", "value": 1, "etag": "5"}]))
            .await
            .0,
        204
    );
    assert_eq!(env.get("k").await.1.as_deref(), Some("1"));
    // Wrong etag: 409; non-integer etag: 400; both ERR_STATE_SAVE.
    let (s, b) = env
        .save(json!([{"key": "k", "value": 2, "etag": "9"}]))
        .await;
    assert_eq!((s, code(&b)), (409, "ERR_STATE_SAVE"));
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("possible etag mismatch"),
        "{b}"
    );
    let (s, b) = env
        .save(json!([{"key": "k", "value": 2, "etag": "abc"}]))
        .await;
    assert_eq!((s, code(&b)), (400, "ERR_STATE_SAVE"));
    // Right etag and no etag both write.
    assert_eq!(
        env.save(json!([{"key": "k", "value": 2, "etag": "1"}]))
            .await
            .0,
        204
    );
    assert_eq!(env.save(json!([{"key": "k", "value": 3}])).await.0, 204);
    assert_eq!(env.get("k").await.1.as_deref(), Some("3"));
    // last-write ignores a wrong etag.
    let lw =
        json!([{"key": "k", "value": 4, "etag": "99", "options": {"concurrency": "last-write"}}]);
    assert_eq!(env.save(lw).await.0, 204);

    // first-write without etag on an unmarked key writes and marks it ...
    let fw = json!([{"key": "k", "value": 5, "options": {"concurrency": "first-write"}}]);
    assert_eq!(env.save(fw.clone()).await.0, 204);
    assert_eq!(env.hash("task-api||k")["first-write"], "0");
    // ... after which saves without an etag fail with 500 and the value stays.
    let (s, b) = env.save(fw).await;
    assert_eq!((s, code(&b)), (500, "ERR_STATE_SAVE"));
    let (s, b) = env.save(json!([{"key": "k", "value": 6}])).await;
    assert_eq!((s, code(&b)), (500, "ERR_STATE_SAVE"));
    assert_eq!(env.get("k").await.2, "5");
    // The current etag still works; a stale one is a 409.
    let etag = env.get("k").await.1.unwrap();
    assert_eq!(
        env.save(json!([{"key": "k", "value": 7, "etag": etag}]))
            .await
            .0,
        204
    );
    let (s, _) = env
        .save(json!([{"key": "k", "value": 8, "etag": etag, "options": {"concurrency": "first-write"}}]))
        .await;
    assert_eq!(s, 409);

    // Multi-item save: one ok, one etag conflict -> 409, the good item is written.
    let (s, _) = env
        .save(json!([{"key": "a", "value": "ok"}, {"key": "k", "value": 0, "etag": "1"}]))
        .await;
    assert_eq!(s, 409);
    assert_eq!(env.get("a").await.2, "\"ok\"");

    // Delete: wrong etag 409 ERR_STATE_DELETE; right etag 204; absent key with etag 204.
    let (s, b) = env.delete("k", Some("1")).await;
    assert_eq!((s, code(&b)), (409, "ERR_STATE_DELETE"));
    let etag = env.get("k").await.1.unwrap();
    assert_eq!(env.delete("k", Some(&etag)).await.0, 204);
    assert_eq!(env.get("k").await.0, 204);
    assert!(!env.server.con().exists::<_, bool>("task-api||k").unwrap());
    assert_eq!(env.delete("k", Some("3")).await.0, 204);
    assert_eq!(env.delete("a", None).await.0, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn ttl_expire_keep_and_persist() {
    let env = env().await;
    let ttl = |key: &str| -> i64 { env.server.con().ttl(key).unwrap() };
    let item = |v: i64, meta: Value| json!([{"key": "t", "value": v, "metadata": meta}]);

    assert_eq!(
        env.save(item(1, json!({"ttlInSeconds": "100"}))).await.0,
        204
    );
    let t = ttl("task-api||t");
    assert!((1..=100).contains(&t), "EXPIRE set: {t}");
    // No TTL given: Redis is not touched, the earlier expiry stays.
    env.save(item(2, json!({}))).await;
    assert!(ttl("task-api||t") > 0);
    // ttlInSeconds <= 0: PERSIST.
    env.save(item(3, json!({"ttlInSeconds": "-1"}))).await;
    assert_eq!(ttl("task-api||t"), -1);
    // Not an integer: 500.
    assert_eq!(
        env.save(item(4, json!({"ttlInSeconds": "soon"}))).await.0,
        500
    );

    // Expired keys read as absent.
    env.save(item(5, json!({"ttlInSeconds": "1"}))).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while env.get("t").await.0 != 204 {
        assert!(tokio::time::Instant::now() < deadline, "key did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The component-level ttlInSeconds applies when the request has none (keyPrefix none).
    let (s, _) = env
        .save_to("ttl-state", json!([{"key": "c", "value": 1}]))
        .await;
    assert_eq!(s, 204);
    let t = ttl("c");
    assert!((1..=50).contains(&t), "component TTL: {t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn transaction_applies_without_rollback() {
    let env = env().await;
    env.save(json!([{"key": "k2", "value": "old"}, {"key": "k3", "value": "gone soon"}]))
        .await;

    let (s, b) = env
        .transact(json!([
            {"operation": "upsert", "request": {"key": "k1", "value": "new"}},
            {"operation": "upsert", "request": {"key": "k2", "value": "conflict", "etag": "99"}},
            {"operation": "delete", "request": {"key": "k3"}},
        ]))
        .await;
    assert_eq!((s, code(&b)), (500, "ERR_STATE_TRANSACTION"));
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .starts_with("error while executing state transaction"),
        "{b}"
    );
    // Like MULTI/EXEC in daprd: the operations around the rejected one were applied.
    assert_eq!(env.get("k1").await.2, "\"new\"");
    let (_, etag, body) = env.get("k2").await;
    assert_eq!((etag.as_deref(), body.as_str()), (Some("1"), "\"old\""));
    assert_eq!(env.get("k3").await.0, 204);

    // A non-integer etag is rejected before anything is sent.
    let (s, _) = env
        .transact(json!([
            {"operation": "upsert", "request": {"key": "k4", "value": 1}},
            {"operation": "upsert", "request": {"key": "k2", "value": 2, "etag": "x"}},
        ]))
        .await;
    assert_eq!(s, 500);
    assert_eq!(env.get("k4").await.0, 204);

    // A clean transaction: all applied, TTL included, versions bumped.
    let (s, _) = env
        .transact(json!([
            {"operation": "upsert", "request": {"key": "k2", "value": "v2", "etag": "1", "metadata": {"ttlInSeconds": "30"}}},
            {"operation": "delete", "request": {"key": "k1", "etag": "1"}},
        ]))
        .await;
    assert_eq!(s, 204);
    assert_eq!(env.get("k2").await.1.as_deref(), Some("2"));
    assert!(env.server.con().ttl::<_, i64>("task-api||k2").unwrap() > 0);
    assert_eq!(env.get("k1").await.0, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_redis_fails_at_load_naming_the_file() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.yaml");
    std::fs::write(
        &file,
        format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-state\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:{port}\n  - name: dialTimeout\n    value: 500ms\n"),
    )
    .unwrap();
    let err = sidecar_testing::Cluster::from_resources(&[dir.path()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("state.yaml") && err.contains("redisHost"),
        "{err}"
    );

    std::fs::write(
        &file,
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-state\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: localhost\n  - name: redisDB\n    value: one\n",
    )
    .unwrap();
    let err = sidecar_testing::Cluster::from_resources(&[dir.path()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("state.yaml") && err.contains("spec.metadata.redisDB"),
        "{err}"
    );
}
