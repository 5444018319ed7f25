//! State API over HTTP: Redis ETag semantics and the daprd status matrix.

use serde_json::{Value, json};
use sidecar_testing::Cluster;
use std::time::Duration;

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn save(&self, items: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1.0/state/todo-state", self.base))
            .json(&items)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn get(&self, key: &str) -> (u16, Option<String>, String) {
        let r = self
            .http
            .get(format!("{}/v1.0/state/todo-state/{key}", self.base))
            .send()
            .await
            .unwrap();
        let etag = r
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), etag, r.text().await.unwrap())
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
        let body = r.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1.0/state/todo-state/{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

async fn api(cluster: &Cluster, app: &str) -> Api {
    let sc = cluster.sidecar(app).start().await.unwrap();
    Api {
        base: sc.http_endpoint(),
        http: reqwest::Client::new(),
    }
}

#[tokio::test]
async fn etags_follow_redis_semantics() {
    let cluster = Cluster::in_memory().await.unwrap();
    let a = api(&cluster, "task-api").await;
    assert_eq!(a.get("k").await.0, 204, "missing key: 204, never 404");
    assert_eq!(a.save(json!([{"key": "k", "value": "x"}])).await.0, 204);
    let (status, etag, body) = a.get("k").await;
    assert_eq!(
        (status, etag.as_deref(), body.as_str()),
        (200, Some("1"), "\"x\"")
    );
    assert_eq!(
        a.save(json!([{"key": "k", "value": 2, "etag": "1"}]))
            .await
            .0,
        204
    );
    assert_eq!(a.get("k").await.1.as_deref(), Some("2"));
    let (s, body) = a.save(json!([{"key": "k", "value": 3, "etag": "1"}])).await;
    assert_eq!(
        (s, body["errorCode"].as_str()),
        (409, Some("ERR_STATE_SAVE"))
    );
    let (s, body) = a
        .save(json!([{"key": "k", "value": 3, "etag": "abc"}]))
        .await;
    assert_eq!(
        (s, body["errorCode"].as_str()),
        (400, Some("ERR_STATE_SAVE"))
    );
    // Save with an etag on an absent key creates it (Redis), version 1.
    assert_eq!(
        a.save(json!([{"key": "new", "value": 1, "etag": "7"}]))
            .await
            .0,
        204
    );
    assert_eq!(a.get("new").await.1.as_deref(), Some("1"));
    // Delete: absent key with an etag is fine; a wrong etag is 409 ERR_STATE_DELETE.
    assert_eq!(a.delete("absent", Some("3")).await.0, 204);
    let (s, body) = a.delete("k", Some("9")).await;
    assert_eq!(
        (s, body["errorCode"].as_str()),
        (409, Some("ERR_STATE_DELETE"))
    );
    assert_eq!(a.delete("k", Some("2")).await.0, 204);
    assert_eq!(a.get("k").await.0, 204);
}

#[tokio::test]
async fn first_write_marks_the_key() {
    let cluster = Cluster::in_memory().await.unwrap();
    let a = api(&cluster, "task-api").await;
    let fw = |v: i32| json!([{"key": "f", "value": v, "options": {"concurrency": "first-write"}}]);
    assert_eq!(a.save(fw(1)).await.0, 204);
    let (s, body) = a.save(fw(2)).await;
    assert_eq!(
        (s, body["errorCode"].as_str()),
        (500, Some("ERR_STATE_SAVE"))
    );
    let (s, _) = a.save(json!([{"key": "f", "value": 3}])).await;
    assert_eq!(s, 500, "after first-write, saves without etag fail");
    assert_eq!(
        a.save(json!([{"key": "f", "value": 4, "etag": "1"}]))
            .await
            .0,
        204
    );
    let (s, _) = a
        .save(json!([{"key": "f", "value": 5, "options": {"concurrency": "sometimes"}}]))
        .await;
    assert_eq!(s, 500);
}

#[tokio::test]
async fn keys_are_prefixed_per_app_and_illegal_keys_rejected() {
    let cluster = Cluster::in_memory().await.unwrap();
    let a = api(&cluster, "task-api").await;
    let b = api(&cluster, "audit-logger").await;
    assert_eq!(
        a.save(json!([{"key": "task:1", "value": {"t": 1}}]))
            .await
            .0,
        204
    );
    assert_eq!(
        b.get("task:1").await.0,
        204,
        "other apps cannot see the key"
    );
    assert_eq!(
        cluster.state_of("task-api", "task:1").await,
        Some(json!({"t": 1}))
    );
    assert_eq!(
        cluster.state_keys("task-api").await,
        vec!["task:1".to_string()]
    );
    assert!(cluster.state_keys("audit-logger").await.is_empty());
    let (s, body) = a.save(json!([{"key": "a||b", "value": 1}])).await;
    assert_eq!(
        (s, body["errorCode"].as_str()),
        (400, Some("ERR_MALFORMED_REQUEST"))
    );
    // daprd's builders add the ErrorInfo last.
    assert_eq!(
        body["details"].as_array().and_then(|d| d.last()).unwrap()["reason"],
        "DAPR_STATE_ILLEGAL_KEY"
    );
    let (s, body) = a.save(json!([{"value": 1}])).await;
    assert_eq!(
        (s, body["errorCode"].as_str()),
        (400, Some("ERR_MALFORMED_REQUEST"))
    );
    let r = a
        .http
        .post(format!("{}/v1.0/state/todo-state", a.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = a
        .http
        .get(format!("{}/v1.0/state/nope/k", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_STATE_STORE_NOT_FOUND"
    );
}

#[tokio::test]
async fn bulk_get_uses_data_and_transactions_report_500() {
    let cluster = Cluster::in_memory().await.unwrap();
    let a = api(&cluster, "task-api").await;
    assert_eq!(
        a.save(json!([{"key": "k1", "value": {"t": "x"}}, {"key": "k2", "value": 2}]))
            .await
            .0,
        204
    );
    let (s, body) = a
        .post("bulk", json!({"keys": ["k1", "missing", "k2"]}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        body,
        json!([{"key": "k1", "data": {"t": "x"}, "etag": "1"}, {"key": "missing"},
               {"key": "k2", "data": 2, "etag": "1"}])
    );
    let tx = json!({"operations": [
        {"operation": "upsert", "request": {"key": "k3", "value": 3}},
        {"operation": "delete", "request": {"key": "k2", "etag": "1"}}
    ]});
    assert_eq!(a.post("transaction", tx).await.0, 204);
    assert_eq!(a.get("k2").await.0, 204);
    assert_eq!(a.get("k3").await.2, "3");
    let tx = json!({"operations": [{"operation": "upsert", "request": {"Key": "k1", "Value": 1, "Etag": "9"}}]});
    let (s, body) = a.post("transaction", tx).await;
    assert_eq!(
        (s, body["errorCode"].as_str()),
        (500, Some("ERR_STATE_TRANSACTION"))
    );
    let tx = json!({"operations": [{"operation": "merge", "request": {"key": "k1"}}]});
    let (s, body) = a.post("transaction", tx).await;
    assert_eq!(
        (s, body["errorCode"].as_str()),
        (400, Some("ERR_NOT_SUPPORTED_STATE_OPERATION"))
    );
    assert_eq!(
        a.post("transaction", json!({"operations": []})).await.0,
        204
    );
}

#[tokio::test]
async fn ttl_expires_keys_and_faults_fail_state_calls() {
    let cluster = Cluster::in_memory().await.unwrap();
    let a = api(&cluster, "task-api").await;
    let item = json!([{"key": "t", "value": 1, "metadata": {"ttlInSeconds": "1"}}]);
    assert_eq!(a.save(item).await.0, 204);
    assert_eq!(a.get("t").await.0, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a.get("t").await.0 != 204 {
        assert!(tokio::time::Instant::now() < deadline, "key did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.faults().fail_next_state_ops(1);
    let (s, body) = a.save(json!([{"key": "x", "value": 1}])).await;
    assert_eq!(
        (s, body["errorCode"].as_str()),
        (500, Some("ERR_STATE_SAVE"))
    );
    assert_eq!(a.save(json!([{"key": "x", "value": 1}])).await.0, 204);
}
