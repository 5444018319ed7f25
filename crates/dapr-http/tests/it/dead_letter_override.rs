//! Per-entry dead-letter overrides in the subscription table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dapr_http::{Outcome, RawEvent, Subscriptions};

async fn ok(_: (), _: RawEvent) -> Outcome {
    Outcome::Success
}

#[test]
fn an_entry_can_opt_out_of_the_tables_dead_letter_topic() {
    let subs = Subscriptions::<()>::new("todo-pubsub")
        .dead_letter_topic("audit-logger-dead-letters")
        .on_raw("task-created", ok)
        .on_raw("email-worker-dead-letters", ok)
        .on_raw("audit-logger-dead-letters", ok)
        .dead_letter_topic_for("email-worker-dead-letters", None)
        .dead_letter_topic_for("audit-logger-dead-letters", None)
        .dead_letter_topic_for("task-created", Some("elsewhere".into()));
    let specs = subs.specs();
    let dlq = |topic: &str| {
        specs
            .iter()
            .find(|s| s.topic == topic)
            .unwrap()
            .dead_letter_topic
            .clone()
    };
    assert_eq!(dlq("task-created").as_deref(), Some("elsewhere"));
    assert_eq!(dlq("email-worker-dead-letters"), None);
    assert_eq!(dlq("audit-logger-dead-letters"), None);
    let json = serde_json::to_value(&specs).unwrap();
    assert!(json[1].get("deadLetterTopic").is_none(), "{json}");
    assert_eq!(json[0]["deadLetterTopic"], "elsewhere");
}

#[test]
fn entries_without_an_override_keep_the_tables_dead_letter_topic() {
    let specs = Subscriptions::<()>::new("todo-pubsub")
        .on_raw("task-created", ok)
        .dead_letter_topic("audit-logger-dead-letters")
        .on_raw("task-updated", ok)
        .dead_letter_topic_for("no-such-topic", None)
        .specs();
    assert!(
        specs
            .iter()
            .all(|s| s.dead_letter_topic.as_deref() == Some("audit-logger-dead-letters"))
    );
}

/// A table with a second chance: `task-created` records and answers `Success`, `task-due-soon`
/// answers `DROP`.
fn second_chance_table(seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> Subscriptions<()> {
    let on = |seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>, outcome: Outcome| {
        move |_: (), e: RawEvent| {
            let seen = seen.clone();
            let outcome = outcome.clone();
            async move {
                seen.lock().unwrap().push(e.cloud_event.topic.clone());
                outcome
            }
        }
    };
    Subscriptions::<()>::new("todo-pubsub")
        .dead_letter_topic("email-worker-dead-letters")
        .on_raw("task-created", on(seen.clone(), Outcome::Success))
        .on_raw("task-due-soon", on(seen, Outcome::Drop("poison".into())))
        .second_chance()
}

#[test]
fn the_second_chance_subscribes_to_the_own_dead_letter_topic_without_one_of_its_own() {
    let specs = second_chance_table(Default::default()).specs();
    let topics: Vec<&str> = specs.iter().map(|s| s.topic.as_str()).collect();
    assert_eq!(
        topics,
        ["task-created", "task-due-soon", "email-worker-dead-letters"]
    );
    assert_eq!(specs[2].route, "/events/email-worker-dead-letters");
    assert_eq!(specs[2].dead_letter_topic, None);
    assert_eq!(
        specs[0].dead_letter_topic.as_deref(),
        Some("email-worker-dead-letters")
    );
    // Without a table dead-letter topic, or with an entry of its own, nothing is added.
    let plain = Subscriptions::<()>::new("p")
        .on_raw("task-created", ok)
        .second_chance();
    assert_eq!(plain.specs().len(), 1);
    let own = Subscriptions::<()>::new("p")
        .dead_letter_topic("mine")
        .on_raw("task-created", ok)
        .on_raw("mine", ok)
        .dead_letter_topic_for("mine", None)
        .second_chance();
    assert_eq!(own.specs().len(), 2);
}

#[tokio::test]
async fn a_dead_letter_goes_to_the_handler_of_its_original_topic() {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let router = second_chance_table(seen.clone()).router(());
    let deliver = |topic: &str| {
        let body = serde_json::json!({
            "specversion": "1.0", "id": format!("ce-{topic}"), "source": "task-api",
            "type": topic, "topic": topic, "pubsubname": "todo-pubsub",
            "datacontenttype": "application/json", "data": {"event_id": "x"}
        });
        Request::post("/events/email-worker-dead-letters")
            .header("content-type", "application/cloudevents+json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let status = |router: axum::Router, req: Request<Body>| async move {
        let resp = router.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["status"].clone()
    };
    assert_eq!(
        status(router.clone(), deliver("task-created")).await,
        "SUCCESS"
    );
    assert_eq!(
        status(router.clone(), deliver("task-due-soon")).await,
        "DROP"
    );
    assert_eq!(
        status(router.clone(), deliver("task-deleted")).await,
        "DROP"
    );
    assert_eq!(*seen.lock().unwrap(), ["task-created", "task-due-soon"]);
}
