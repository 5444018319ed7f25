//! Batch handlers (bulk subscribe): the envelope in, one status per entry out, and the same
//! route taking a single delivery; driven with tower `oneshot` and once through the sidecar.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use dapr_http::{BulkSubscribe, Event, Outcome, RawEvent, Subscriptions};
use events::{Envelope, EventPayload, Priority, TaskCreated, TaskSnapshot, TaskStatus};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

fn created(correlation_id: &str) -> Envelope<TaskCreated> {
    let now = chrono::Utc::now();
    Envelope::with_id(
        uuid::Uuid::now_v7(),
        now,
        "task-api",
        correlation_id,
        TaskCreated {
            task: TaskSnapshot {
                task_id: uuid::Uuid::from_u128(42),
                user_id: uuid::Uuid::from_u128(7),
                user_email: "a@example.com".into(),
                title: "t".into(),
                description: String::new(),
                priority: Priority::Low,
                due_date: None,
                status: TaskStatus::Open,
                version: 1,
                created_at: now,
                updated_at: now,
            },
        },
    )
}

type SeenBatches = Arc<Mutex<Vec<Vec<String>>>>;

/// Answers each event by its `case`: `retry`, `drop`, `short` (the handler leaves the last
/// outcome out), anything else SUCCESS.
async fn on_batch(seen: SeenBatches, events: Vec<RawEvent>) -> Vec<Outcome> {
    let cases: Vec<String> = events
        .iter()
        .map(|e| e.data["case"].as_str().unwrap_or_default().to_owned())
        .collect();
    seen.lock().unwrap().push(cases.clone());
    let mut outcomes: Vec<Outcome> = cases
        .iter()
        .map(|c| match c.as_str() {
            "retry" => Outcome::Retry("later".into()),
            "drop" => Outcome::Drop("never".into()),
            _ => Outcome::Success,
        })
        .collect();
    if cases.iter().any(|c| c == "short") {
        outcomes.pop();
    }
    outcomes
}

async fn on_typed(seen: SeenBatches, events: Vec<Event<TaskCreated>>) -> Vec<Outcome> {
    seen.lock().unwrap().push(
        events
            .iter()
            .map(|e| e.envelope.correlation_id.clone())
            .collect(),
    );
    events.iter().map(|_| Outcome::Success).collect()
}

fn router(seen: &SeenBatches) -> Router {
    Subscriptions::new("todo-pubsub")
        .on_raw_batch(
            "audit",
            BulkSubscribe::new(50, Duration::from_millis(20)),
            on_batch,
        )
        .on_batch::<TaskCreated, _, _>(BulkSubscribe::new(10, Duration::from_millis(5)), on_typed)
        .router(seen.clone())
}

fn entry(id: &str, case: &str) -> Value {
    json!({"entryId": id, "contentType": "application/cloudevents+json",
           "metadata": {"partitionKey": id},
           "event": {"id": format!("ce-{id}"), "source": "task-api", "specversion": "1.0",
                     "type": "x", "topic": "audit", "data": {"case": case}}})
}

fn envelope(entries: Vec<Value>) -> Value {
    json!({"id": "b1", "type": "com.dapr.event.sent.bulk", "topic": "audit",
           "pubsubname": "todo-pubsub", "metadata": {"pubsubName": "todo-pubsub"},
           "entries": entries})
}

async fn post(router: &Router, path: &str, body: &Value) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn statuses(answer: &Value) -> Vec<(String, String)> {
    answer["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["entryId"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn dapr_subscribe_lists_the_bulk_subscribe_element() {
    let seen = SeenBatches::default();
    let specs = Subscriptions::<SeenBatches>::new("todo-pubsub")
        .on_raw_batch(
            "audit",
            BulkSubscribe::new(50, Duration::from_millis(20)),
            on_batch,
        )
        .specs();
    assert_eq!(
        serde_json::to_value(&specs).unwrap(),
        json!([{"pubsubname": "todo-pubsub", "topic": "audit", "route": "/events/audit",
                "bulkSubscribe": {"enabled": true, "maxMessagesCount": 50, "maxAwaitDurationMs": 20}}])
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_entry_gets_its_handlers_outcome_and_undecodable_ones_are_dropped() {
    let seen = SeenBatches::default();
    let router = router(&seen);
    let mut broken = entry("e4", "x");
    broken["event"] = json!("not base64 ~~~");
    broken["contentType"] = json!("application/octet-stream");
    let body = envelope(vec![
        entry("e1", "ok"),
        entry("e2", "retry"),
        entry("e3", "drop"),
        broken,
        json!({"entryId": "e5", "event": [1, 2], "contentType": "application/json"}),
    ]);
    let (status, answer) = post(&router, "/events/audit", &body).await;
    assert_eq!(status, StatusCode::OK);
    let mut got = statuses(&answer);
    got.sort();
    assert_eq!(
        got,
        [
            ("e1".to_owned(), "SUCCESS".to_owned()),
            ("e2".into(), "RETRY".into()),
            ("e3".into(), "DROP".into()),
            ("e4".into(), "DROP".into()),
            ("e5".into(), "DROP".into()),
        ]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [vec!["ok".to_owned(), "retry".into(), "drop".into()]],
        "the handler sees the decodable entries, in order, in one call"
    );
}

#[tokio::test]
async fn an_outcome_the_handler_leaves_out_is_a_retry() {
    let seen = SeenBatches::default();
    let router = router(&seen);
    let body = envelope(vec![entry("a", "ok"), entry("b", "short")]);
    let (_, answer) = post(&router, "/events/audit", &body).await;
    assert_eq!(
        statuses(&answer),
        [
            ("a".to_owned(), "SUCCESS".to_owned()),
            ("b".into(), "RETRY".into())
        ]
    );
}

#[tokio::test]
async fn a_single_delivery_on_a_batch_route_is_a_batch_of_one() {
    let seen = SeenBatches::default();
    let router = router(&seen);
    let single = entry("s", "drop")["event"].clone();
    let (status, answer) = post(&router, "/events/audit", &single).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"status": "DROP"}));
    assert_eq!(*seen.lock().unwrap(), [vec!["drop".to_owned()]]);
}

#[tokio::test]
async fn a_malformed_batch_is_answered_400_so_the_sidecar_retries_it() {
    let router = router(&SeenBatches::default());
    let body = json!({"type": "com.dapr.event.sent.bulk", "entries": [{"event": {}}]});
    let (status, _) = post(&router, "/events/audit", &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn typed_batches_decode_each_entry() {
    let seen = SeenBatches::default();
    let router = router(&seen);
    let published = created("corr-1");
    let event = json!({"id": published.event_id.to_string(), "source": "task-api",
        "specversion": "1.0", "type": TaskCreated::TOPIC.as_str(), "topic": "task-created",
        "datacontenttype": "application/json", "data": published});
    let body = json!({"id": "b", "type": "com.dapr.event.sent.bulk", "topic": "task-created",
        "pubsubname": "todo-pubsub", "metadata": {},
        "entries": [{"entryId": "t1", "event": event, "contentType": "application/cloudevents+json",
                     "metadata": null},
                    {"entryId": "t2", "event": {"data": {"nope": 1}}, "contentType": "application/cloudevents+json"}]});
    let (_, answer) = post(&router, "/events/task-created", &body).await;
    assert_eq!(
        statuses(&answer),
        [
            ("t1".to_owned(), "SUCCESS".to_owned()),
            ("t2".into(), "DROP".into())
        ]
    );
    assert_eq!(*seen.lock().unwrap(), [vec!["corr-1".to_owned()]]);
}
