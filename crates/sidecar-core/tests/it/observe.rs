//! The tap on the shared publish and delivery layer (`observe`): an observer installed on the
//! run's runtime sees each API publish before its deliveries, and every delivery attempt with
//! its outcome, status and attempt number, the dead letter marked; bulk deliveries per entry.

use crate::app::{Responder, TestApp, publish};
use serde_json::{Value, json};
use sidecar_core::Resources;
use sidecar_core::observe::{Delivery, Observer, Published};
use sidecar_testing::Cluster;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl Observer for Recorder {
    fn published(&self, e: &Published<'_>) {
        let id = sidecar_core::observe::event_id(e.data).unwrap_or_default();
        self.0.lock().unwrap().push(format!(
            "published {} {} by {} id={id}",
            e.pubsub, e.topic, e.publisher
        ));
    }
    fn delivered(&self, d: &Delivery<'_>) {
        self.0.lock().unwrap().push(format!(
            "delivered {} id={} to {} {} attempt={} {} status={:?} dead_lettered={}",
            d.topic,
            d.event_id.unwrap_or("-"),
            d.subscriber,
            d.route,
            d.attempt,
            d.outcome.as_str(),
            d.status,
            d.dead_lettered
        ));
    }
}

impl Recorder {
    async fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.0.lock().unwrap().clone();
            if seen.len() >= n {
                return seen;
            }
            assert!(Instant::now() < deadline, "only {seen:#?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

const RESOURCES: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: { name: todo-pubsub }
spec:
  type: pubsub.in-memory
  version: v1
---
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
"#;

#[tokio::test]
async fn every_attempt_is_seen_after_its_publish_and_the_dead_letter_is_marked() {
    let cluster =
        Cluster::from(Resources::from_yaml(Path::new("test.yaml"), RESOURCES).unwrap()).unwrap();
    let recorder = Arc::new(Recorder::default());
    cluster.runtime().tap().set(recorder.clone());
    let subs =
        json!([{"pubsubname":"todo-pubsub","topic":"t","route":"/e","deadLetterTopic":"dlq"}]);
    let failing: Responder = Arc::new(|_| (500, String::new()));
    let app = TestApp::start(subs, failing).await;
    let worker = cluster
        .sidecar("worker")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    assert!(worker.wait_ready(Duration::from_secs(10)).await);
    let publisher = cluster.sidecar("api").start().await.unwrap();
    let resp = publish(
        &publisher.http_endpoint(),
        "t",
        "?metadata.cloudevent.id=e1",
        "application/json",
        r#"{"n":1}"#,
    )
    .await;
    assert_eq!(resp.status(), 204);
    let seen = recorder.wait_for(5).await;
    assert_eq!(
        seen,
        [
            "published todo-pubsub t by api id=e1",
            "delivered t id=e1 to worker /e attempt=1 RETRY status=Some(500) dead_lettered=false",
            "delivered t id=e1 to worker /e attempt=2 RETRY status=Some(500) dead_lettered=false",
            "delivered t id=e1 to worker /e attempt=3 RETRY status=Some(500) dead_lettered=false",
            "delivered t id=e1 to worker  attempt=0 ERROR status=None dead_lettered=true",
        ]
    );
    cluster.runtime().tap().clear();
    assert!(cluster.runtime().tap().observer().is_none());
}

#[tokio::test]
async fn bulk_deliveries_are_seen_per_entry() {
    let cluster = Cluster::in_memory().await.unwrap();
    let recorder = Arc::new(Recorder::default());
    cluster.runtime().tap().set(recorder.clone());
    let subs = json!([{"pubsubname":"todo-pubsub","topic":"b","route":"/bulk",
        "bulkSubscribe": {"enabled": true, "maxMessagesCount": 3, "maxAwaitDurationMs": 60000}}]);
    let answer: Responder = Arc::new(|r| {
        let body: Value = r.json();
        let statuses: Vec<Value> = body["entries"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| json!({"entryId": e["entryId"], "status": "SUCCESS"}))
                    .collect()
            })
            .unwrap_or_default();
        (200, json!({"statuses": statuses}).to_string())
    });
    let app = TestApp::start(subs, answer).await;
    let worker = cluster
        .sidecar("worker")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    assert!(worker.wait_ready(Duration::from_secs(10)).await);
    let publisher = cluster.sidecar("api").start().await.unwrap();
    for i in 0..3 {
        let resp = publish(
            &publisher.http_endpoint(),
            "b",
            &format!("?metadata.cloudevent.id=b{i}"),
            "application/json",
            r#"{"n":1}"#,
        )
        .await;
        assert_eq!(resp.status(), 204);
    }
    let seen = recorder.wait_for(6).await;
    for i in 0..3 {
        assert!(
            seen.contains(&format!("published todo-pubsub b by api id=b{i}")),
            "{seen:#?}"
        );
        assert!(
            seen.contains(&format!(
                "delivered b id=b{i} to worker /bulk attempt=1 SUCCESS status=Some(200) dead_lettered=false"
            )),
            "{seen:#?}"
        );
    }
}
