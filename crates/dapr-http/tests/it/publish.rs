//! Publishing against a fake sidecar over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use dapr_http::{DaprClient, DaprError, DaprSettings, PublishOptions, RetryPolicy, SecretString};
use events::{Envelope, Priority, TaskCreated, TaskSnapshot, TaskStatus};
use support::{Canned, FakeSidecar, PUBSUB};
use uuid::Uuid;

fn task_created() -> Envelope<TaskCreated> {
    // Whole microseconds: the wire format's precision, so the envelope round-trips exactly.
    let now: DateTime<Utc> = "2026-01-02T03:04:05.123456Z".parse().unwrap();
    Envelope::with_id(
        Uuid::now_v7(),
        now,
        "task-api",
        "corr-1",
        TaskCreated {
            task: TaskSnapshot {
                task_id: Uuid::from_u128(42),
                user_id: Uuid::from_u128(7),
                user_email: "a@example.com".into(),
                title: "write tests".into(),
                description: String::new(),
                priority: Priority::High,
                due_date: None,
                status: TaskStatus::Open,
                version: 1,
                created_at: now,
                updated_at: now,
            },
        },
    )
}

fn client(sidecar: &FakeSidecar, retry: RetryPolicy) -> DaprClient {
    DaprClient::new(
        DaprSettings::with_endpoint(&sidecar.endpoint)
            .publish_retry(retry)
            .request_timeout(Duration::from_secs(5)),
    )
    .unwrap()
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn publish_sends_the_envelope_with_cloudevent_overrides_and_partition_key() {
    let sidecar = FakeSidecar::start_with(Some("api-secret")).await;
    let client = DaprClient::new(
        DaprSettings::with_endpoint(&sidecar.endpoint)
            .api_token(Some(SecretString::from("api-secret"))),
    )
    .unwrap();
    let envelope = task_created();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    client
        .publish_traced(PUBSUB, &envelope, Some(traceparent))
        .await
        .unwrap();

    let requests = sidecar.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1.0/publish/todo-pubsub/task-created");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("dapr-api-token"), Some("api-secret"));
    assert_eq!(r.header("traceparent"), Some(traceparent));
    assert_eq!(
        r.query_value("metadata.cloudevent.id"),
        Some(envelope.event_id.to_string().as_str())
    );
    assert_eq!(
        r.query_value("metadata.cloudevent.type"),
        Some("task-created")
    );
    assert_eq!(
        r.query_value("metadata.partitionKey"),
        Some(Uuid::from_u128(42).to_string().as_str())
    );
    assert_eq!(r.query_value("metadata.rawPayload"), None);
    let sent: Envelope<TaskCreated> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(sent, envelope);
}

#[tokio::test]
async fn publish_without_traceparent_sends_no_header() {
    let sidecar = FakeSidecar::start().await;
    client(&sidecar, RetryPolicy::none())
        .publish(PUBSUB, &task_created())
        .await
        .unwrap();
    assert_eq!(sidecar.requests()[0].header("traceparent"), None);
    assert_eq!(sidecar.requests()[0].header("dapr-api-token"), None);
}

#[tokio::test]
async fn publish_with_percent_encodes_path_and_query() {
    let sidecar = FakeSidecar::start().await;
    let mut opts = PublishOptions {
        content_type: Some("text/plain".into()),
        cloudevent_id: Some("id with spaces&=?#".into()),
        partition_key: Some("a/b".into()),
        raw_payload: true,
        ..PublishOptions::default()
    };
    opts.metadata.insert("ttlInSeconds".into(), "60".into());
    client(&sidecar, RetryPolicy::none())
        .publish_with(PUBSUB, "odd topic/#?", Bytes::from_static(b"hello"), opts)
        .await
        .unwrap();

    let r = &sidecar.requests()[0];
    assert_eq!(r.path, "/v1.0/publish/todo-pubsub/odd%20topic%2F%23%3F");
    assert_eq!(
        r.segments,
        ["v1.0", "publish", "todo-pubsub", "odd topic/#?"]
    );
    assert_eq!(
        r.query_value("metadata.cloudevent.id"),
        Some("id with spaces&=?#")
    );
    assert_eq!(r.query_value("metadata.partitionKey"), Some("a/b"));
    assert_eq!(r.query_value("metadata.rawPayload"), Some("true"));
    assert_eq!(r.query_value("metadata.ttlInSeconds"), Some("60"));
    assert_eq!(r.query_value("metadata.cloudevent.type"), None);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(&r.body[..], b"hello");
}

#[tokio::test]
async fn publish_retries_a_503_then_succeeds_with_the_same_request() {
    let sidecar = FakeSidecar::start().await;
    sidecar.push_canned(Canned::error(
        503,
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        "broker unavailable",
    ));
    sidecar.push_canned(Canned::text(502, "bad gateway"));
    let envelope = task_created();
    client(&sidecar, fast_retry(3))
        .publish(PUBSUB, &envelope)
        .await
        .unwrap();

    let requests = sidecar.requests_to("/v1.0/publish/");
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r.query, requests[0].query);
        assert_eq!(r.body, requests[0].body);
        assert_eq!(
            r.query_value("metadata.cloudevent.id"),
            Some(envelope.event_id.to_string().as_str())
        );
    }
}

#[tokio::test]
async fn publish_gives_up_after_the_configured_attempts() {
    let sidecar = FakeSidecar::start().await;
    for _ in 0..5 {
        sidecar.push_canned(Canned::error(500, "ERR_PUBSUB_PUBLISH_MESSAGE", "boom"));
    }
    let err = client(&sidecar, fast_retry(3))
        .publish(PUBSUB, &task_created())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DaprError::Server { status: 500, code, .. } if code == "ERR_PUBSUB_PUBLISH_MESSAGE"),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(sidecar.requests().len(), 3);
}

#[tokio::test]
async fn publish_does_not_retry_a_403() {
    let sidecar = FakeSidecar::start().await;
    sidecar.push_canned(Canned::error(
        403,
        "ERR_PUBSUB_FORBIDDEN",
        "topic task-created is not allowed for app id task-api",
    ));
    let err = client(&sidecar, fast_retry(5))
        .publish(PUBSUB, &task_created())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DaprError::Forbidden { code, .. } if code == "ERR_PUBSUB_FORBIDDEN"),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(sidecar.requests().len(), 1);
}

#[tokio::test]
async fn unknown_pubsub_is_pubsub_not_found_without_retry() {
    let sidecar = FakeSidecar::start().await;
    let err = client(&sidecar, fast_retry(5))
        .publish("nope", &task_created())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DaprError::PubsubNotFound { pubsub, .. } if pubsub == "nope"),
        "{err:?}"
    );
    assert_eq!(sidecar.requests().len(), 1);
}

#[tokio::test]
async fn wrong_api_token_is_unauthorized_from_the_text_body() {
    let sidecar = FakeSidecar::start_with(Some("right")).await;
    let client = DaprClient::new(
        DaprSettings::with_endpoint(&sidecar.endpoint)
            .api_token(Some(SecretString::from("wrong")))
            .publish_retry(fast_retry(3)),
    )
    .unwrap();
    let err = client.publish(PUBSUB, &task_created()).await.unwrap_err();
    assert!(
        matches!(&err, DaprError::Unauthorized { message } if message == "invalid api token"),
        "{err:?}"
    );
    assert!(!err.to_string().contains("wrong"), "{err}");
    assert_eq!(sidecar.requests().len(), 1);
}

#[tokio::test]
async fn publish_to_a_stopped_sidecar_retries_then_is_unavailable() {
    let endpoint = support::dead_endpoint().await;
    let client = DaprClient::new(
        DaprSettings::with_endpoint(&endpoint)
            .publish_retry(fast_retry(3))
            .connect_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = client.publish(PUBSUB, &task_created()).await.unwrap_err();
    assert!(
        matches!(&err, DaprError::SidecarUnavailable { endpoint: e, .. } if *e == endpoint),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn publish_without_a_fixed_id_does_not_retry_a_5xx() {
    let sidecar = FakeSidecar::start().await;
    sidecar.push_canned(Canned::error(
        503,
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        "maybe sent",
    ));
    let err = client(&sidecar, fast_retry(5))
        .publish_with(
            PUBSUB,
            "misc",
            Bytes::from_static(b"{}"),
            PublishOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DaprError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(sidecar.requests().len(), 1);
}
