//! Publish -> delivery over real HTTP: envelope, headers, fan-out, competing consumers,
//! response interpretation, retries and dead letters.

use crate::app::{Responder, TestApp, ok, publish, sub};
use serde_json::json;
use sidecar_core::Resources;
use sidecar_testing::Cluster;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn cluster(yaml: &str) -> Cluster {
    Cluster::from(Resources::from_yaml(Path::new("test.yaml"), yaml).unwrap()).unwrap()
}

const SEQUENTIAL: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: { name: todo-pubsub }
spec:
  type: pubsub.in-memory
  version: v1
  metadata:
    - { name: concurrency, value: "1" }
"#;

#[tokio::test]
async fn delivery_carries_the_stored_cloudevent_and_daprd_headers() {
    let cluster = Cluster::in_memory().await.unwrap();
    let app = TestApp::start(json!([sub("task-created", "/events/task-created")]), ok()).await;
    let _sub = cluster
        .sidecar("email-worker")
        .app_port(Some(app.port))
        .start()
        .await
        .unwrap();
    let publisher = cluster.sidecar("task-api").start().await.unwrap();
    let resp = publish(
        &publisher.http_endpoint(),
        "task-created",
        "?metadata.cloudevent.id=e1&metadata.cloudevent.type=task-created&metadata.partitionKey=t1",
        "application/json",
        r#"{"event_id":"e1","n":1}"#,
    )
    .await;
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.unwrap().is_empty());

    let got = app.wait_for(1).await;
    let d = &got[0];
    assert_eq!(d.path, "/events/task-created");
    assert_eq!(
        d.header("content-type").as_deref(),
        Some("application/cloudevents+json")
    );
    assert_eq!(d.header("pubsubname").as_deref(), Some("todo-pubsub"));
    assert_eq!(d.header("partitionKey").as_deref(), Some("t1"));
    // A child span of the event's trace.
    let delivered_tp = d.header("traceparent").unwrap();
    let trace_id = |tp: &str| tp.split('-').nth(1).unwrap().to_string();
    let ce = d.json();
    assert_eq!(ce["id"], "e1");
    assert_eq!(ce["type"], "task-created");
    assert_eq!(ce["source"], "task-api");
    assert_eq!(ce["data"], json!({"event_id": "e1", "n": 1}));
    assert_eq!(ce["datacontenttype"], "application/json");
    assert_eq!(
        trace_id(&delivered_tp),
        trace_id(ce["traceparent"].as_str().unwrap())
    );
    assert_ne!(delivered_tp, ce["traceparent"]);
    // The body is the stored bytes: identical to what the publish log recorded.
    assert_eq!(cluster.published("task-created"), vec![ce]);
}

#[tokio::test]
async fn apps_fan_out_and_replicas_of_one_app_compete() {
    let cluster = Cluster::in_memory().await.unwrap();
    let subs = json!([sub("task-created", "/e")]);
    let w1 = TestApp::start(subs.clone(), ok()).await;
    let w2 = TestApp::start(subs.clone(), ok()).await;
    let audit = TestApp::start(subs, ok()).await;
    for (id, app) in [("worker", &w1), ("worker", &w2), ("audit", &audit)] {
        cluster
            .sidecar(id)
            .app_port(app.port)
            .start()
            .await
            .unwrap();
    }
    for i in 0..20 {
        cluster
            .publish("task-api", "task-created", &json!({"i": i}))
            .await
            .unwrap();
    }
    let audit_got = audit.wait_for(20).await;
    let ids = |v: &[crate::app::Received]| -> Vec<String> {
        v.iter()
            .map(|r| r.json()["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&audit_got).iter().collect::<HashSet<_>>().len(), 20);
    // The two replicas share one group: together they see each event exactly once.
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while all.len() < 20 && tokio::time::Instant::now() < deadline {
        all = ids(&w1.deliveries());
        all.extend(ids(&w2.deliveries()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(all.len(), 20);
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        20,
        "no duplicates"
    );
}

#[tokio::test]
async fn a_shared_literal_consumer_id_makes_different_apps_compete() {
    let cluster = cluster(
        r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: { name: todo-pubsub }
spec:
  type: pubsub.in-memory
  version: v1
  metadata:
    - { name: consumerID, value: shared-group }
"#,
    );
    let subs = json!([sub("t", "/e")]);
    let a = TestApp::start(subs.clone(), ok()).await;
    let b = TestApp::start(subs, ok()).await;
    cluster.sidecar("a").app_port(a.port).start().await.unwrap();
    cluster.sidecar("b").app_port(b.port).start().await.unwrap();
    for i in 0..10 {
        cluster.publish("p", "t", &json!({"i": i})).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.deliveries().len() + b.deliveries().len() < 10 {
        assert!(tokio::time::Instant::now() < deadline, "deliveries missing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.deliveries().len() + b.deliveries().len(), 10);
}

fn by_mode() -> Responder {
    Arc::new(|r| match r.json()["data"]["mode"].as_str().unwrap_or("") {
        "drop" => (200, r#"{"status":"DROP"}"#.into()),
        "retry" => (200, r#"{"status":"RETRY"}"#.into()),
        "lower" => (200, r#"{"status":"success"}"#.into()),
        "notfound" => (404, "nope".into()),
        "fail" => (500, "boom".into()),
        _ => (200, r#"{"status":"SUCCESS"}"#.into()),
    })
}

#[tokio::test]
async fn responses_are_interpreted_like_daprd_and_drops_are_dead_lettered() {
    let cluster = cluster(SEQUENTIAL);
    let subs =
        json!([{"pubsubname":"todo-pubsub","topic":"t","route":"/e","deadLetterTopic":"dlq"}]);
    let app = TestApp::start(subs, by_mode()).await;
    cluster
        .sidecar("worker")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    // Deliveries are sequential (concurrency 1): when "last" is dead-lettered, every earlier
    // message has been fully handled.
    for mode in ["ok", "notfound", "drop", "retry", "lower", "fail", "last"] {
        let m = if mode == "last" { "drop" } else { mode };
        cluster
            .publish("p", "t", &json!({"mode": m, "tag": mode}))
            .await
            .unwrap();
    }
    let dlq = cluster
        .wait_for_published("dlq", 5, Duration::from_secs(10))
        .await
        .unwrap();
    let tags: Vec<&str> = dlq
        .iter()
        .map(|ce| ce["data"]["tag"].as_str().unwrap())
        .collect();
    // No resiliency policy + a dead-letter topic: the first failure is dead-lettered.
    assert_eq!(tags, ["drop", "retry", "lower", "fail", "last"]);
    assert!(!tags.contains(&"notfound") && !tags.contains(&"ok"));
    // The dead letter keeps the original CloudEvent (topic still "t").
    assert_eq!(dlq[0]["topic"], "t");
    assert_eq!(app.deliveries().len(), 7);
}

#[tokio::test]
async fn resiliency_retries_then_dead_letters() {
    let cluster = cluster(&format!(
        "{SEQUENTIAL}\n---\n{}",
        r#"
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: { name: r }
spec:
  policies:
    retries:
      quick: { policy: constant, duration: 10ms, maxRetries: 2 }
  targets:
    components:
      todo-pubsub: { inbound: { retry: quick } }
"#
    ));
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = attempts.clone();
    let responder: Responder = Arc::new(move |r| {
        if r.json()["data"]["mode"] == "flaky" {
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < 2 {
                return (503, String::new());
            }
            return (200, String::new());
        }
        (500, String::new())
    });
    let subs =
        json!([{"pubsubname":"todo-pubsub","topic":"t","route":"/e","deadLetterTopic":"dlq"}]);
    let app = TestApp::start(subs, responder).await;
    cluster
        .sidecar("worker")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    cluster
        .publish("p", "t", &json!({"mode": "flaky"}))
        .await
        .unwrap();
    cluster
        .publish("p", "t", &json!({"mode": "broken"}))
        .await
        .unwrap();
    let dlq = cluster
        .wait_for_published("dlq", 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(dlq[0]["data"]["mode"], "broken");
    let d = app.deliveries();
    let count = |m: &str| d.iter().filter(|r| r.json()["data"]["mode"] == m).count();
    assert_eq!(count("flaky"), 3, "two failures then success");
    assert_eq!(count("broken"), 3, "initial attempt + maxRetries 2");
    assert_eq!(cluster.published("dlq").len(), 1);
}

#[tokio::test]
async fn without_dead_letter_topic_failures_are_redelivered_by_the_component() {
    let cluster = Cluster::in_memory().await.unwrap();
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = attempts.clone();
    let responder: Responder = Arc::new(move |_| {
        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n < 2 {
            (200, r#"{"status":"RETRY"}"#.into())
        } else {
            (200, String::new())
        }
    });
    let app = TestApp::start(json!([sub("t", "/e")]), responder).await;
    cluster
        .sidecar("w")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    cluster.publish("p", "t", &json!({"x": 1})).await.unwrap();
    let got = app.wait_for(3).await;
    let ids: HashSet<String> = got.iter().map(|r| r.json()["id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "the same event, redelivered");
}

#[tokio::test]
async fn expired_events_are_dropped_to_the_dead_letter_topic() {
    let cluster = cluster(SEQUENTIAL);
    let subs =
        json!([{"pubsubname":"todo-pubsub","topic":"t","route":"/e","deadLetterTopic":"dlq"}]);
    let app = TestApp::start(subs, ok()).await;
    let sc = cluster
        .sidecar("w")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    cluster
        .faults()
        .delay_deliveries(Duration::from_millis(1500));
    let r = publish(
        &sc.http_endpoint(),
        "t",
        "?metadata.ttlInSeconds=1",
        "text/plain",
        "old",
    )
    .await;
    assert_eq!(r.status(), 204);
    let dlq = cluster
        .wait_for_published("dlq", 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(dlq[0]["data"], "old");
    assert!(dlq[0]["expiration"].is_string());
    cluster.faults().delay_deliveries(Duration::ZERO);
    cluster.publish("p", "t", &json!("fresh")).await.unwrap();
    let got = app.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["data"], "fresh");
}

#[tokio::test]
async fn declarative_subscriptions_respect_scopes_and_lose_to_programmatic_ones() {
    let cluster = cluster(
        r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: { name: todo-pubsub }
spec: { type: pubsub.in-memory, version: v1, metadata: [] }
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: { name: decl }
spec:
  pubsubname: todo-pubsub
  topic: d
  routes: { default: /declared }
scopes: [worker]
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata: { name: overridden }
spec: { pubsubname: todo-pubsub, topic: t, route: /declared-t }
"#,
    );
    let app = TestApp::start(json!([sub("t", "/programmatic-t")]), ok()).await;
    let other = TestApp::start(json!([]), ok()).await;
    cluster
        .sidecar("worker")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    cluster
        .sidecar("other")
        .app_port(other.port)
        .start()
        .await
        .unwrap();
    cluster.publish("p", "d", &json!(1)).await.unwrap();
    cluster.publish("p", "t", &json!(2)).await.unwrap();
    let got = app.wait_for(2).await;
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/declared", "/programmatic-t"]);
    // "other" is out of scope for "d" but gets the unscoped declarative "t".
    let got = other.wait_for(1).await;
    assert_eq!(got[0].path, "/declared-t");
}

#[tokio::test]
async fn drops_without_a_dead_letter_topic_are_acked_while_retries_come_back() {
    let cluster = Cluster::in_memory().await.unwrap();
    let app = TestApp::start(json!([sub("t", "/e")]), by_mode()).await;
    cluster
        .sidecar("w")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    cluster
        .publish("p", "t", &json!({"mode": "drop"}))
        .await
        .unwrap();
    cluster
        .publish("p", "t", &json!({"mode": "retry"}))
        .await
        .unwrap();
    let mode_count = |d: &[crate::app::Received], m: &str| {
        d.iter().filter(|r| r.json()["data"]["mode"] == m).count()
    };
    // By the third delivery of the retried event, a wrongly redelivered drop would be back too.
    let got = app.wait_until(|d| mode_count(d, "retry") >= 3).await;
    assert_eq!(mode_count(&got, "drop"), 1);
}

// The responder blocks its thread, so the sidecar needs a second worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_timeout_turns_a_hanging_app_into_a_retriable_failure() {
    let cluster = cluster(&format!(
        "{SEQUENTIAL}\n---\n{}",
        r#"
kind: Resiliency
metadata: { name: r }
spec:
  policies:
    timeouts: { quick: 200ms }
  targets:
    components:
      todo-pubsub: { inbound: { timeout: quick } }
"#
    ));
    let responder: Responder = Arc::new(|r| {
        if r.json()["data"] == "slow" {
            std::thread::sleep(Duration::from_millis(800));
        }
        (200, String::new())
    });
    let subs =
        json!([{"pubsubname":"todo-pubsub","topic":"t","route":"/e","deadLetterTopic":"dlq"}]);
    let app = TestApp::start(subs, responder).await;
    cluster
        .sidecar("w")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    cluster.publish("p", "t", &json!("slow")).await.unwrap();
    let dlq = cluster
        .wait_for_published("dlq", 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(dlq[0]["data"], "slow");
}
