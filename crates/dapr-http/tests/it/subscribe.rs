//! The app-side subscription router, driven with tower `oneshot` and once over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use dapr_http::{DaprClient, DaprSettings, Event, Outcome, RawEvent, SecretString, Subscriptions};
use events::{Envelope, Priority, TaskCreated, TaskSnapshot, TaskStatus};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use uuid::Uuid;

#[derive(Clone, Default)]
struct Seen {
    typed: Arc<Mutex<Vec<Event<TaskCreated>>>>,
    raw: Arc<Mutex<Vec<RawEvent>>>,
}

fn envelope(correlation_id: &str) -> Envelope<TaskCreated> {
    let now: DateTime<Utc> = "2026-01-02T03:04:05.123456Z".parse().unwrap();
    Envelope::with_id(
        Uuid::now_v7(),
        now,
        "task-api",
        correlation_id,
        TaskCreated {
            task: TaskSnapshot {
                task_id: Uuid::from_u128(42),
                user_id: Uuid::from_u128(7),
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

/// The CloudEvent daprd would deliver for `data` published with the envelope's overrides.
fn cloud_event(data: &Value, id: &str, topic: &str) -> Value {
    json!({
        "data": data, "datacontenttype": "application/json", "id": id,
        "pubsubname": "todo-pubsub", "source": "task-api", "specversion": "1.0",
        "time": "2026-01-02T03:04:05Z", "topic": topic,
        "traceid": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "", "type": topic
    })
}

/// Answers by correlation id, so one handler can produce every outcome.
async fn on_created(seen: Seen, event: Event<TaskCreated>) -> Outcome {
    let outcome = match event.envelope.correlation_id.as_str() {
        "retry" => Outcome::Retry("store down".into()),
        "drop" => Outcome::Drop("invalid".into()),
        _ => Outcome::Success,
    };
    seen.typed.lock().unwrap().push(event);
    outcome
}

async fn on_any(seen: Seen, event: RawEvent) -> Outcome {
    seen.raw.lock().unwrap().push(event);
    Outcome::Success
}

fn router(seen: &Seen, token: Option<&str>) -> Router {
    Subscriptions::new("todo-pubsub")
        .dead_letter_topic(events::dead_letter_topic("audit-logger"))
        .on::<TaskCreated, _, _>(on_created)
        .on_raw("email-worker-dead-letters", on_any)
        .app_api_token(token.map(SecretString::from))
        .router(seen.clone())
}

async fn call(router: &Router, request: Request<Body>) -> (StatusCode, Bytes) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

fn deliver(path: &str, body: impl Into<Body>, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(path)
        .header("content-type", "application/cloudevents+json")
        .header("pubsubname", "todo-pubsub")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
    if let Some(token) = token {
        builder = builder.header("dapr-api-token", token);
    }
    builder.body(body.into()).unwrap()
}

fn status_of(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap();
    value["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn dapr_subscribe_lists_every_entry_with_exact_field_names() {
    let router = router(&Seen::default(), None);
    let (status, body) = call(
        &router,
        Request::get("/dapr/subscribe").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value,
        json!([
            { "pubsubname": "todo-pubsub", "topic": "task-created",
              "route": "/events/task-created", "deadLetterTopic": "audit-logger-dead-letters" },
            { "pubsubname": "todo-pubsub", "topic": "email-worker-dead-letters",
              "route": "/events/email-worker-dead-letters",
              "deadLetterTopic": "audit-logger-dead-letters" }
        ])
    );
}

#[tokio::test]
async fn subscribe_without_dead_letter_omits_the_field_and_later_entries_replace_earlier() {
    let router = Subscriptions::new("todo-pubsub")
        .on_raw("task-created", on_any)
        .on::<TaskCreated, _, _>(on_created)
        .router(Seen::default());
    let (_, body) = call(
        &router,
        Request::get("/dapr/subscribe").body(Body::empty()).unwrap(),
    )
    .await;
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value,
        json!([{ "pubsubname": "todo-pubsub", "topic": "task-created", "route": "/events/task-created" }])
    );
}

#[tokio::test]
async fn typed_delivery_reaches_the_handler_and_answers_success() {
    let seen = Seen::default();
    let router = router(&seen, None);
    let envelope = envelope("c1");
    let id = envelope.event_id.to_string();
    let body = cloud_event(
        &serde_json::to_value(&envelope).unwrap(),
        &id,
        "task-created",
    );
    let (status, answer) = call(
        &router,
        deliver("/events/task-created", body.to_string(), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&answer).unwrap(),
        json!({ "status": "SUCCESS" })
    );

    let typed = seen.typed.lock().unwrap();
    assert_eq!(typed.len(), 1);
    let event = &typed[0];
    assert_eq!(event.envelope, envelope);
    assert_eq!(event.cloud_event.id, id);
    assert_eq!(event.cloud_event.topic, "task-created");
    assert_eq!(event.dedupe_id(), id);
    assert_eq!(event.headers.get("pubsubname").unwrap(), "todo-pubsub");
    assert_eq!(
        event.traceparent(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
}

#[tokio::test]
async fn handler_outcomes_map_to_retry_and_drop_bodies() {
    let seen = Seen::default();
    let router = router(&seen, None);
    for (correlation, expected) in [("retry", "RETRY"), ("drop", "DROP"), ("ok", "SUCCESS")] {
        let envelope = envelope(correlation);
        let body = cloud_event(
            &serde_json::to_value(&envelope).unwrap(),
            "id",
            "task-created",
        );
        let (status, answer) = call(
            &router,
            deliver("/events/task-created", body.to_string(), None),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{correlation}");
        assert_eq!(status_of(&answer), expected);
    }
    assert_eq!(seen.typed.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn undecodable_events_are_dropped_with_200_never_404() {
    let seen = Seen::default();
    let router = router(&seen, None);
    let wrong_type = cloud_event(
        &json!({ "event_type": "task-deleted", "event_id": Uuid::nil() }),
        "x",
        "task-created",
    );
    let bad_envelope = cloud_event(
        &json!({ "event_type": "task-created" }),
        "y",
        "task-created",
    );
    let bodies = [
        "not json".to_owned(),
        "[1,2]".to_owned(),
        wrong_type.to_string(),
        bad_envelope.to_string(),
    ];
    for body in bodies {
        let (status, answer) =
            call(&router, deliver("/events/task-created", body.clone(), None)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(status_of(&answer), "DROP", "{body}");
    }
    // Raw entries accept any JSON but still drop bytes that are not JSON.
    let (status, answer) = call(
        &router,
        deliver("/events/email-worker-dead-letters", "{oops", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_of(&answer), "DROP");
    assert!(seen.typed.lock().unwrap().is_empty());
    assert!(seen.raw.lock().unwrap().is_empty());
}

#[tokio::test]
async fn raw_handler_gets_attributes_data_and_exact_bytes() {
    let seen = Seen::default();
    let router = router(&seen, None);
    let body = cloud_event(
        &json!({ "anything": [1, 2] }),
        "dl-1",
        "email-worker-dead-letters",
    )
    .to_string();
    let (status, answer) = call(
        &router,
        deliver("/events/email-worker-dead-letters", body.clone(), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_of(&answer), "SUCCESS");
    let raw = seen.raw.lock().unwrap();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].cloud_event.id, "dl-1");
    assert_eq!(raw[0].data, json!({ "anything": [1, 2] }));
    assert_eq!(raw[0].body, Bytes::from(body));
}

#[tokio::test]
async fn app_api_token_is_required_when_configured() {
    let seen = Seen::default();
    let router = router(&seen, Some("app-secret"));
    let envelope = envelope("c1");
    let body = cloud_event(
        &serde_json::to_value(&envelope).unwrap(),
        "id",
        "task-created",
    )
    .to_string();

    for token in [None, Some("wrong"), Some("app-secre"), Some("app-secret2")] {
        let (status, answer) = call(
            &router,
            deliver("/events/task-created", body.clone(), token),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(&answer[..], b"invalid api token");
        let request = Request::get("/dapr/subscribe");
        let request = match token {
            Some(t) => request.header("dapr-api-token", t),
            None => request,
        };
        let (status, _) = call(&router, request.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert!(seen.typed.lock().unwrap().is_empty());

    let (status, answer) = call(
        &router,
        deliver("/events/task-created", body, Some("app-secret")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_of(&answer), "SUCCESS");
    let request = Request::get("/dapr/subscribe").header("dapr-api-token", "app-secret");
    let (status, _) = call(&router, request.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    // The token is not handed to handlers (they may log headers).
    assert!(
        seen.typed.lock().unwrap()[0]
            .headers
            .get("dapr-api-token")
            .is_none()
    );
}

#[tokio::test]
async fn published_envelope_round_trips_through_a_sidecar_style_delivery_over_http() {
    // Publish through the client, wrap what the sidecar received the way daprd does, and deliver
    // it to the router served on a real port.
    let sidecar = support::FakeSidecar::start().await;
    let client = DaprClient::new(DaprSettings::with_endpoint(&sidecar.endpoint)).unwrap();
    let envelope = envelope("e2e");
    client.publish("todo-pubsub", &envelope).await.unwrap();
    let published = &sidecar.requests()[0];
    let data: Value = serde_json::from_slice(&published.body).unwrap();
    let id = published.query_value("metadata.cloudevent.id").unwrap();
    let event_type = published.query_value("metadata.cloudevent.type").unwrap();
    let mut delivery = cloud_event(&data, id, "task-created");
    delivery["type"] = json!(event_type);

    let seen = Seen::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(&seen, None);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/events/task-created"))
        .header("content-type", "application/cloudevents+json")
        .body(delivery.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({ "status": "SUCCESS" })
    );
    server.abort();

    let typed = seen.typed.lock().unwrap();
    assert_eq!(typed[0].envelope, envelope);
    assert_eq!(typed[0].dedupe_id(), envelope.event_id.to_string());
    assert_eq!(typed[0].cloud_event.event_type, "task-created");
}

#[tokio::test]
async fn a_dead_letter_topic_is_never_its_own_dead_letter_topic_and_metadata_is_strings() {
    let specs = Subscriptions::<Seen>::new("todo-pubsub")
        .dead_letter_topic("audit-logger-dead-letters")
        .on_raw("audit-logger-dead-letters", on_any)
        .on::<TaskCreated, _, _>(on_created)
        .metadata_for("task-created", "rawPayload", "false")
        .specs();
    let value = serde_json::to_value(&specs).unwrap();
    assert_eq!(
        value,
        json!([
            { "pubsubname": "todo-pubsub", "topic": "audit-logger-dead-letters",
              "route": "/events/audit-logger-dead-letters" },
            { "pubsubname": "todo-pubsub", "topic": "task-created", "route": "/events/task-created",
              "deadLetterTopic": "audit-logger-dead-letters", "metadata": { "rawPayload": "false" } }
        ])
    );
}

#[tokio::test]
async fn deliveries_up_to_daprs_4_mib_limit_are_accepted() {
    let seen = Seen::default();
    let router = router(&seen, None);
    let big = "x".repeat(3 * 1024 * 1024);
    let body = cloud_event(&json!({ "blob": big }), "big", "email-worker-dead-letters").to_string();
    let (status, answer) = call(
        &router,
        deliver("/events/email-worker-dead-letters", body, None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_of(&answer), "SUCCESS");
    assert_eq!(seen.raw.lock().unwrap().len(), 1);
}
