//! The client and the subscription router against the local Dapr-compatible sidecar, end to end:
//! publish → broker → delivery to the router, state with etags, tokens, dead letters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dapr_http::{
    DaprClient, DaprError, DaprSettings, Event, Outcome, SaveItem, SecretString, Subscriptions,
    TransactionOp,
};
use events::{Envelope, Priority, TaskCreated, TaskSnapshot, TaskStatus};
use serde_json::{Value, json};
use sidecar_testing::Cluster;
use uuid::Uuid;

const STORE: &str = "todo-state";
const PUBSUB: &str = "todo-pubsub";

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

fn client(endpoint: &str) -> DaprClient {
    DaprClient::new(DaprSettings::with_endpoint(endpoint)).unwrap()
}

#[tokio::test]
async fn publish_sets_cloudevent_id_and_type_from_the_envelope() {
    let cluster = Cluster::in_memory().await.unwrap();
    let sc = cluster.sidecar("task-api").start().await.unwrap();
    let client = client(&sc.http_endpoint());
    client
        .wait_for_sidecar(Duration::from_secs(5))
        .await
        .unwrap();
    let envelope = envelope("c1");
    client
        .publish_traced(
            PUBSUB,
            &envelope,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        )
        .await
        .unwrap();
    let published = cluster
        .wait_for_published("task-created", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let ce = &published[0];
    assert_eq!(ce["id"], json!(envelope.event_id.to_string()));
    assert_eq!(ce["type"], "task-created");
    assert_eq!(ce["source"], "task-api");
    assert_eq!(ce["datacontenttype"], "application/json");
    assert_eq!(
        serde_json::from_value::<Envelope<TaskCreated>>(ce["data"].clone()).unwrap(),
        envelope
    );
    assert!(
        ce["traceparent"]
            .as_str()
            .unwrap()
            .contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{ce}"
    );
    let err = client
        .publish("no-such-pubsub", &envelope)
        .await
        .unwrap_err();
    assert!(matches!(err, DaprError::PubsubNotFound { .. }), "{err:?}");
    cluster.shutdown().await;
}

#[tokio::test]
async fn state_round_trip_with_etags_bulk_and_transactions() {
    let cluster = Cluster::in_memory().await.unwrap();
    let sc = cluster.sidecar("task-api").start().await.unwrap();
    let client = client(&sc.http_endpoint());

    assert_eq!(
        client.get_state::<Value>(STORE, "task:1").await.unwrap(),
        None
    );
    client
        .save_state(
            STORE,
            &[SaveItem::new("task:1", &json!({ "v": 1 })).unwrap()],
        )
        .await
        .unwrap();
    let first = client
        .get_state::<Value>(STORE, "task:1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.value, json!({ "v": 1 }));
    let etag = first.etag.clone().unwrap();
    assert_eq!(
        cluster.state_of("task-api", "task:1").await,
        Some(json!({ "v": 1 }))
    );

    let update = SaveItem::new("task:1", &json!({ "v": 2 }))
        .unwrap()
        .etag(Some(&etag));
    client
        .save_state(STORE, std::slice::from_ref(&update))
        .await
        .unwrap();
    // The same etag again is now stale.
    let err = client.save_state(STORE, &[update]).await.unwrap_err();
    assert!(matches!(err, DaprError::EtagMismatch { .. }), "{err:?}");
    let err = client
        .delete_state(STORE, "task:1", Some(&etag))
        .await
        .unwrap_err();
    assert!(err.is_etag_conflict(), "{err:?}");

    let bulk = client
        .get_bulk_state::<Value>(STORE, &["task:1".into(), "task:missing".into()])
        .await
        .unwrap();
    assert_eq!(bulk[0].value, Some(json!({ "v": 2 })));
    assert!(bulk[0].etag.is_some());
    assert_eq!(bulk[1].value, None);

    let stale = TransactionOp::Delete {
        key: "task:1".into(),
        etag: Some(etag.clone()),
    };
    let err = client.transact_state(STORE, &[stale]).await.unwrap_err();
    assert!(matches!(err, DaprError::Transaction { .. }), "{err:?}");
    assert!(err.is_etag_conflict());

    let current = bulk[0].etag.clone();
    let ops = [
        TransactionOp::Delete {
            key: "task:1".into(),
            etag: current,
        },
        TransactionOp::Upsert(SaveItem::new("task:2", &json!(2)).unwrap()),
    ];
    client.transact_state(STORE, &ops).await.unwrap();
    assert_eq!(
        client.get_state::<Value>(STORE, "task:1").await.unwrap(),
        None
    );
    assert_eq!(cluster.state_of("task-api", "task:2").await, Some(json!(2)));

    let err = client
        .get_state::<Value>("no-such-store", "k")
        .await
        .unwrap_err();
    assert!(matches!(err, DaprError::StoreNotFound { .. }), "{err:?}");
    cluster.shutdown().await;
}

#[tokio::test]
async fn api_token_is_sent_and_a_wrong_one_is_unauthorized() {
    let cluster = Cluster::in_memory().await.unwrap();
    let sc = cluster
        .sidecar("task-api")
        .api_token("sidecar-secret")
        .start()
        .await
        .unwrap();
    let without = client(&sc.http_endpoint());
    // Health is exempt from the token check.
    without
        .wait_for_sidecar(Duration::from_secs(5))
        .await
        .unwrap();
    let err = without.get_state::<Value>(STORE, "k").await.unwrap_err();
    assert!(matches!(err, DaprError::Unauthorized { .. }), "{err:?}");
    let with = DaprClient::new(
        DaprSettings::with_endpoint(sc.http_endpoint())
            .api_token(Some(SecretString::from("sidecar-secret"))),
    )
    .unwrap();
    assert_eq!(with.get_state::<Value>(STORE, "k").await.unwrap(), None);
    cluster.shutdown().await;
}

#[tokio::test]
async fn stopped_sidecar_is_unavailable_within_the_timeout() {
    let cluster = Cluster::in_memory().await.unwrap();
    let sc = cluster.sidecar("task-api").start().await.unwrap();
    let endpoint = sc.http_endpoint();
    let timeout = Duration::from_millis(500);
    let client = DaprClient::new(
        DaprSettings::with_endpoint(&endpoint)
            .request_timeout(timeout)
            .connect_timeout(timeout),
    )
    .unwrap();
    assert!(client.is_ready().await);
    sc.shutdown().await;
    let started = Instant::now();
    let err = client.get_state::<Value>(STORE, "k").await.unwrap_err();
    assert!(
        matches!(err, DaprError::SidecarUnavailable { .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < timeout + Duration::from_millis(700));
    assert!(!client.is_ready().await);
    cluster.shutdown().await;
}

type Seen = Arc<Mutex<Vec<Event<TaskCreated>>>>;

async fn on_created(seen: Seen, event: Event<TaskCreated>) -> Outcome {
    let drop = event.envelope.correlation_id == "poison";
    seen.lock().unwrap().push(event);
    if drop {
        Outcome::Drop("poison".into())
    } else {
        Outcome::Success
    }
}

#[tokio::test]
async fn router_receives_typed_events_and_drops_go_to_the_dead_letter_topic() {
    let cluster = Cluster::in_memory().await.unwrap();
    let seen: Seen = Arc::default();
    let app = Subscriptions::new(PUBSUB)
        .dead_letter_topic(events::dead_letter_topic("email-worker"))
        .on::<TaskCreated, _, _>(on_created)
        .app_api_token(Some(SecretString::from("app-secret")))
        .router(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let _email = cluster
        .sidecar("email-worker")
        .app_port(Some(app_port))
        .app_api_token("app-secret")
        .start()
        .await
        .unwrap();
    let publisher = cluster.sidecar("task-api").start().await.unwrap();
    let client = client(&publisher.http_endpoint());

    let good = envelope("fine");
    let poison = envelope("poison");
    client.publish(PUBSUB, &good).await.unwrap();
    client.publish(PUBSUB, &poison).await.unwrap();

    let dead = cluster
        .wait_for_published("email-worker-dead-letters", 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(dead[0]["id"], json!(poison.event_id.to_string()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let mut ids: Vec<String> = seen.iter().map(|e| e.dedupe_id()).collect();
    ids.sort();
    let mut expected = vec![good.event_id.to_string(), poison.event_id.to_string()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(seen.iter().any(|e| e.envelope == good));
    assert!(
        seen.iter()
            .all(|e| e.headers.get("dapr-api-token").is_none())
    );
    server.abort();
    cluster.shutdown().await;
}
