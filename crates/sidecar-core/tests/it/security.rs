//! Tokens, scopes, health, invocation and limits.

use crate::app::{Responder, TestApp, ok, publish, sub};
use serde_json::{Value, json};
use sidecar_core::Resources;
use sidecar_testing::Cluster;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn api_token_guards_everything_but_healthz() {
    let cluster = Cluster::in_memory().await.unwrap();
    let sc = cluster
        .sidecar("a")
        .api_token("s3cret")
        .start()
        .await
        .unwrap();
    let ep = sc.http_endpoint();
    let http = reqwest::Client::new();
    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        let r = http.get(format!("{ep}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 204, "{path}");
    }
    for (token, status) in [(None, 401), (Some("wrong"), 401), (Some("s3cret"), 200)] {
        let mut req = http.get(format!("{ep}/v1.0/metadata"));
        if let Some(t) = token {
            req = req.header("dapr-api-token", t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status);
        if status == 401 {
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain")
            );
            assert_eq!(r.text().await.unwrap(), "invalid api token");
        }
    }
    let r = publish(&ep, "t", "", "text/plain", "x").await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn app_token_is_sent_on_subscribe_and_deliveries() {
    let cluster = Cluster::in_memory().await.unwrap();
    let app = TestApp::start(json!([sub("t", "/e")]), ok()).await;
    cluster
        .sidecar("w")
        .app_port(app.port)
        .app_api_token("app-tok")
        .start()
        .await
        .unwrap();
    cluster.publish("p", "t", &json!(1)).await.unwrap();
    app.wait_for(1).await;
    for r in app.all() {
        assert_eq!(
            r.header("dapr-api-token").as_deref(),
            Some("app-tok"),
            "{}",
            r.path
        );
        if r.path == "/dapr/subscribe" {
            assert_eq!(r.header("dapr-app-id").as_deref(), Some("w"));
        }
    }
}

#[tokio::test]
async fn topic_rules_and_component_scopes_are_enforced() {
    let res = Resources::from_yaml(
        Path::new("scopes.yaml"),
        r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: { name: todo-pubsub }
spec:
  type: pubsub.in-memory
  version: v1
  metadata:
    - { name: allowedTopics, value: "a,b" }
    - { name: publishingScopes, value: "reader=" }
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: { name: private-state }
spec: { type: state.in-memory, version: v1, metadata: [] }
scopes: [owner]
"#,
    )
    .unwrap();
    let cluster = Cluster::from(res).unwrap();
    let writer = cluster.sidecar("writer").start().await.unwrap();
    let reader = cluster.sidecar("reader").start().await.unwrap();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(publish(&writer.http_endpoint(), "a", "", "text/plain", "x").await),
        204
    );
    let r = publish(&writer.http_endpoint(), "c", "", "text/plain", "x").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_PUBSUB_FORBIDDEN");
    // daprd's builders add the ErrorInfo last.
    assert_eq!(
        body["details"].as_array().and_then(|d| d.last()).unwrap()["reason"],
        "DAPR_PUBSUB_FORBIDDEN"
    );
    assert_eq!(
        status(publish(&reader.http_endpoint(), "a", "", "text/plain", "x").await),
        403
    );
    let r = reqwest::Client::new()
        .post(format!("{}/v1.0/publish/nope/a", writer.http_endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_PUBSUB_NOT_FOUND"
    );
    // Out of the store's scopes, and no other store: not configured at all.
    let r = reqwest::get(format!(
        "{}/v1.0/state/private-state/k",
        writer.http_endpoint()
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_STATE_STORE_NOT_CONFIGURED"
    );
}

#[tokio::test]
async fn healthz_waits_for_the_app_port() {
    let cluster = Cluster::in_memory().await.unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sc = cluster
        .sidecar("late")
        .app_port(port)
        .start()
        .await
        .unwrap();
    let ep = sc.http_endpoint();
    let r = reqwest::get(format!("{ep}/v1.0/healthz")).await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_HEALTH_NOT_READY"
    );
    let r = reqwest::get(format!("{ep}/v1.0/healthz/outbound"))
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let _app = TestApp::start_on(port, json!([]), ok()).await;
    assert!(sc.wait_ready(Duration::from_secs(10)).await);
    let r = reqwest::get(format!("{ep}/v1.0/healthz")).await.unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn invocation_passes_verb_query_headers_body_and_status() {
    let cluster = Cluster::in_memory().await.unwrap();
    let responder: Responder = Arc::new(|r| {
        (
            201,
            format!("{}|{}", r.path, String::from_utf8_lossy(&r.body)),
        )
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
        .api_token("tok")
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .put(format!(
            "{}/v1.0/invoke/target/method/items/7?x=1",
            caller.http_endpoint()
        ))
        .header("dapr-api-token", "tok")
        .header("x-custom", "yes")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().await.unwrap(), "/items/7|payload");
    let got = target.wait_for(1).await;
    assert_eq!(got[0].header("x-custom").as_deref(), Some("yes"));
    assert_eq!(
        got[0].header("dapr-api-token"),
        None,
        "caller token never forwarded"
    );
    let r = http
        .post(format!(
            "{}/v1.0/invoke/target/method/a%20b/c%2Fd",
            caller.http_endpoint()
        ))
        .header("dapr-api-token", "tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().await.unwrap(), "/a%20b/c%2Fd|");
    let r = http
        .get(format!(
            "{}/v1.0/invoke/ghost/method/x",
            caller.http_endpoint()
        ))
        .header("dapr-api-token", "tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_DIRECT_INVOKE"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_faults_fail_publishes() {
    let cluster = Cluster::in_memory().await.unwrap();
    let sc = cluster
        .sidecar("a")
        .max_body_size(1024)
        .start()
        .await
        .unwrap();
    let big = "x".repeat(2048);
    let r = publish(&sc.http_endpoint(), "t", "", "text/plain", &big).await;
    assert_eq!(r.status(), 413);
    cluster.faults().fail_next_publishes(1);
    let r = publish(&sc.http_endpoint(), "t", "", "text/plain", "x").await;
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_PUBSUB_PUBLISH_MESSAGE");
    let r = publish(&sc.http_endpoint(), "t", "", "text/plain", "x").await;
    assert_eq!(r.status(), 204);
    assert_eq!(cluster.published("t").len(), 1);
}

/// daprd caps a request's head at its read buffer size (`MaxHeaderBytes`, 4 KiB by default, plus
/// the 4 KiB Go's `net/http` reads beyond it) and answers 431 above that; bodies are not capped
/// by it. The sidecar holds heads to the same 8 KiB.
#[tokio::test]
async fn request_heads_over_daprds_header_limit_get_431_and_large_bodies_still_pass() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = Cluster::in_memory().await.unwrap();
    let sc = cluster.sidecar("a").start().await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1.0/publish/todo-pubsub/t", sc.http_endpoint());
    // Within the limit: a 6 KiB header and a 2 MiB body.
    let body = json!({"blob": "x".repeat(2 << 20)});
    let r = http
        .post(&url)
        .header("x-padding", "p".repeat(6 * 1024))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(cluster.published("t").len(), 1);
    // 8 KiB of a head that has not ended yet: the server has read all of it (so it closes
    // cleanly, with nothing unread) and cannot take more.
    let mut head = b"POST /v1.0/publish/todo-pubsub/t HTTP/1.1\r\nHost: a\r\nX-Padding: ".to_vec();
    head.resize(8 * 1024, b'p');
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", sc.port()))
        .await
        .unwrap();
    stream.write_all(&head).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the sidecar answers an oversized head and closes")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 431"),
        "an 8 KiB head got: {response}"
    );
    assert_eq!(cluster.published("t").len(), 1);
}

#[tokio::test]
async fn bulk_publish_wraps_each_entry() {
    let cluster = Cluster::in_memory().await.unwrap();
    let sc = cluster.sidecar("a").start().await.unwrap();
    let url = format!(
        "{}/v1.0-alpha1/publish/bulk/todo-pubsub/t",
        sc.http_endpoint()
    );
    let http = reqwest::Client::new();
    let entries = json!([
        {"entryId": "1", "event": {"a": 1}, "contentType": "application/json", "metadata": {"cloudevent.id": "x1"}},
        {"entryId": "2", "event": "hi", "contentType": "text/plain"}
    ]);
    let r = http.post(&url).json(&entries).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let got = cluster.published("t");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["id"], "x1");
    assert_eq!(got[0]["data"], json!({"a": 1}));
    assert_eq!(got[1]["data"], "hi");
    let dup = json!([{"entryId": "1", "event": 1, "contentType": "application/json"},
                     {"entryId": "1", "event": 2, "contentType": "application/json"}]);
    let r = http.post(&url).json(&dup).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_PUBSUB_EVENTS_SER"
    );
}

#[tokio::test]
async fn metadata_describes_the_sidecar_and_accepts_extended_attributes() {
    let cluster = Cluster::in_memory().await.unwrap();
    let app = TestApp::start(json!([sub("t", "/e")]), ok()).await;
    let sc = cluster
        .sidecar("meta")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    let ep = sc.http_endpoint();
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{ep}/v1.0/metadata/appCommand"))
        .body("cargo run")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let meta: Value = reqwest::get(format!("{ep}/v1.0/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["id"], "meta");
    assert_eq!(meta["extended"]["appCommand"], "cargo run");
    assert_eq!(meta["appConnectionProperties"]["port"], app.port);
    let names: Vec<&str> = meta["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["todo-state", "todo-pubsub"]);
    assert_eq!(
        meta["components"][0]["capabilities"],
        json!(["ETAG", "TRANSACTIONAL", "TTL"])
    );
    assert_eq!(meta["subscriptions"][0]["topic"], "t");
    let r = reqwest::get(format!("{ep}/v1.0/healthz?appid=other"))
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_HEALTH_APPID_NOT_MATCH"
    );
    // `//` and a trailing `/` are normalised before routing.
    let r = reqwest::get(format!("{ep}/v1.0//metadata/")).await.unwrap();
    assert_eq!(r.status(), 200);
}
