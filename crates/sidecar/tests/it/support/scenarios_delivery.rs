//! Scenarios of `conformance_delivery.rs`, run against each [`Backend`] (in-memory and Redis
//! components): the test entry points live in `conformance_*.rs`.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::*;

/// Publishes `{"case": <case>}` as JSON on `topic`.
async fn publish_case(sc: &Sidecar, topic: &str, case: &str) {
    let resp = sc
        .publish(
            PUBSUB,
            topic,
            "",
            Some("application/json"),
            json!({"case": case}).to_string(),
        )
        .await;
    assert_no_content(resp).await;
}

fn case_of(r: &Received) -> String {
    let ce = r.json();
    // Deliveries to the DLQ route carry the original CloudEvent.
    ce["data"]["case"].as_str().unwrap_or_default().to_owned()
}

fn count(all: &[Received], path: &str, case: &str) -> usize {
    all.iter()
        .filter(|r| r.path == path && case_of(r) == case)
        .count()
}

/// How daprd reads the app's answer to a delivery (`Deliver` in
/// `pkg/runtime/subscription/postman/http/http.go`), under an inbound retry policy of 2 retries
/// with a dead-letter topic.
pub async fn response_interpretation_table(backend: &Backend) {
    let subs = json!([
        {"pubsubname": PUBSUB, "topic": "outcomes", "route": "/outcomes", "deadLetterTopic": "outcomes-dlq"},
        sub("outcomes-dlq", "/dlq"),
    ]);
    let p = Pair::start(
        "outcome-app",
        subs,
        &[
            ("components.yaml", backend.components()),
            ("resiliency.yaml", RESILIENCY),
        ],
    )
    .await;
    p.app.respond_with(|r| {
        if r.path != "/outcomes" {
            return (StatusCode::OK, String::new());
        }
        let body = |s: &str| (StatusCode::OK, s.to_owned());
        match case_of(r).as_str() {
            "SUCCESS" => body(r#"{"status":"SUCCESS"}"#),
            "empty" => body(""),
            "text" => body("OK"),
            "no-status" => body("{}"),
            "RETRY" => body(r#"{"status":"RETRY"}"#),
            "lowercase" => body(r#"{"status":"success"}"#),
            "DROP" => body(r#"{"status":"DROP"}"#),
            "404" => (StatusCode::NOT_FOUND, "gone".into()),
            "500" => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
            "sentinel" => body(r#"{"status":"RETRY"}"#),
            _ => body(""),
        }
    });
    let acked = ["SUCCESS", "empty", "text", "no-status"];
    let retried = ["RETRY", "lowercase", "500"];
    for case in acked.iter().chain(&retried).chain(&["DROP", "404"]) {
        publish_case(&p.sidecar, "outcomes", case).await;
    }
    // Everything retried ends in the DLQ after 1 + 2 attempts; DROP goes there at once.
    p.app
        .wait_until("retried cases and DROP dead-lettered", |all| {
            retried
                .iter()
                .chain(&["DROP"])
                .all(|c| count(all, "/dlq", c) == 1)
                .then_some(())
        })
        .await;
    // A later event under the same policy: once it is dead-lettered, any wrong retry of the
    // first batch would have run its course too.
    publish_case(&p.sidecar, "outcomes", "sentinel").await;
    p.app
        .wait_until("sentinel dead-lettered", |all| {
            (count(all, "/dlq", "sentinel") == 1).then_some(())
        })
        .await;

    let all = p.app.received();
    for case in acked {
        assert_eq!(count(&all, "/outcomes", case), 1, "{case}: delivered once");
        assert_eq!(
            count(&all, "/dlq", case),
            0,
            "{case}: acked, not dead-lettered"
        );
    }
    for case in retried {
        assert_eq!(
            count(&all, "/outcomes", case),
            3,
            "{case}: retried by the policy (1 + 2)"
        );
    }
    assert_eq!(count(&all, "/outcomes", "DROP"), 1, "DROP is not retried");
    assert_eq!(count(&all, "/outcomes", "404"), 1, "404 is not retried");
    assert_eq!(
        count(&all, "/dlq", "404"),
        0,
        "404 is dropped without dead-lettering"
    );

    let dead = all
        .iter()
        .find(|r| r.path == "/dlq" && case_of(r) == "DROP")
        .unwrap()
        .json();
    assert_eq!(
        dead["topic"], "outcomes",
        "the original message bytes are dead-lettered"
    );
}

pub async fn without_a_retry_policy_the_first_failure_goes_to_the_dead_letter_topic(
    backend: &Backend,
) {
    let subs = json!([
        {"pubsubname": PUBSUB, "topic": "once", "route": "/once", "deadLetterTopic": "once-dlq"},
        sub("once-dlq", "/dlq"),
    ]);
    let p = Pair::start(
        "no-policy-app",
        subs,
        &[("components.yaml", backend.components())],
    )
    .await;
    p.app.respond_with(|r| {
        if r.path == "/once" {
            (StatusCode::OK, r#"{"status":"RETRY"}"#.into())
        } else {
            (StatusCode::OK, String::new())
        }
    });
    publish_case(&p.sidecar, "once", "x").await;
    p.app.wait_for("/dlq", 1).await;
    assert_eq!(p.app.received_on("/once").len(), 1);
}

async fn slow_subscriber(
    backend: &Backend,
    app_id: &str,
    failures: &[SubscribeFailure],
) -> (TestApp, Sidecar, tempfile::TempDir) {
    let app = TestApp::start(json!([sub("later", "/later")])).await;
    app.state
        .subscribe_failures
        .lock()
        .unwrap()
        .extend_from_slice(failures);
    let dir = resources_dir(&[("components.yaml", backend.components())]);
    let sc = Sidecar::start(SidecarSpec {
        app_id: app_id.into(),
        app_port: Some(app.port),
        resources: vec![dir.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    sc.wait_ready().await;
    (app, sc, dir)
}

/// daprd wraps the `/dapr/subscribe` call in its initialization retry policy, which retries
/// transport failures (the app channel returns an error only for those).
pub async fn subscribe_is_retried_after_transport_errors_until_200(backend: &Backend) {
    let (app, sc, _dir) = slow_subscriber(
        backend,
        "slow-app",
        &[SubscribeFailure::Drop, SubscribeFailure::Drop],
    )
    .await;
    let calls = app.state.subscribe_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "two dropped connections, then 200");
    assert_eq!(calls[2].header("dapr-app-id").as_deref(), Some("slow-app"));
    publish_case(&sc, "later", "x").await;
    app.wait_for("/later", 1).await;
}

/// Only 200 is parsed: any other status is logged and gives no programmatic subscriptions
/// (`GetSubscriptionsHTTP` in daprd's `pkg/runtime/pubsub/subscriptions.go`); a status is an
/// answer, so it is not retried.
pub async fn a_non_200_subscribe_answer_gives_no_subscriptions(backend: &Backend) {
    let (app, sc, _dir) = slow_subscriber(
        backend,
        "grumpy-app",
        &[SubscribeFailure::Status(StatusCode::SERVICE_UNAVAILABLE)],
    )
    .await;
    let m: Value = http()
        .get(sc.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let subs = m
        .get("subscriptions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(subs.is_empty(), "no subscriptions after a 503: {m}");
    assert_eq!(app.state.subscribe_calls.lock().unwrap().len(), 1);
}

pub async fn route_rules_use_cel_over_the_cloudevent(backend: &Backend) {
    let subs = json!([{
        "pubsubname": PUBSUB, "topic": "routed",
        "routes": {
            "rules": [
                {"match": "event.type == \"special\"", "path": "/special"},
                {"match": "event.data.priority > 3", "path": "high"}
            ],
            "default": "/default"
        },
        "route": "/ignored-when-default-exists"
    }]);
    let p = Pair::start(
        "router-app",
        subs,
        &[("components.yaml", backend.components())],
    )
    .await;
    let publish = |q: &'static str, body: Value| {
        let sc = &p.sidecar;
        async move {
            assert_no_content(
                sc.publish(
                    PUBSUB,
                    "routed",
                    q,
                    Some("application/json"),
                    body.to_string(),
                )
                .await,
            )
            .await
        }
    };
    publish("?metadata.cloudevent.type=special", json!({"priority": 9})).await;
    publish("", json!({"priority": 5})).await;
    publish("", json!({"priority": 1})).await;
    p.app.wait_for("/special", 1).await;
    p.app.wait_for("/high", 1).await;
    let default = p.app.wait_for("/default", 1).await;
    assert_eq!(default[0].json()["data"]["priority"], 1);
    assert!(p.app.received_on("/ignored-when-default-exists").is_empty());
    assert_eq!(
        p.app.received_on("/special").len(),
        1,
        "first matching rule wins"
    );
}

pub async fn app_token_is_sent_on_subscribe_and_deliveries(backend: &Backend) {
    let p = Pair::start_with(
        "token-app",
        json!([sub("t", "/t")]),
        &[("components.yaml", backend.components())],
        |s| {
            s.app_api_token = Some("app-secret".into());
        },
    )
    .await;
    publish_case(&p.sidecar, "t", "x").await;
    let got = p.app.wait_for("/t", 1).await;
    assert_eq!(
        got[0].header("dapr-api-token").as_deref(),
        Some("app-secret")
    );
    let calls = p.app.state.subscribe_calls.lock().unwrap().clone();
    assert_eq!(
        calls[0].header("dapr-api-token").as_deref(),
        Some("app-secret")
    );
}

/// DROP is acked whether or not a dead-letter topic is set (daprd's subscription handler in
/// `pkg/runtime/subscription/subscription.go`); only retriable
/// failures go back to the component for redelivery.
pub async fn drop_without_a_dead_letter_topic_is_acked_not_redelivered(backend: &Backend) {
    let subs = json!([sub("drops", "/drops"), sub("retries", "/retries")]);
    let p = Pair::start(
        "dropper-app",
        subs,
        &[("components.yaml", backend.components())],
    )
    .await;
    p.app.respond_with(|r| match r.path.as_str() {
        "/drops" => (StatusCode::OK, r#"{"status":"DROP"}"#.into()),
        _ => (StatusCode::OK, r#"{"status":"RETRY"}"#.into()),
    });
    publish_case(&p.sidecar, "drops", "d").await;
    publish_case(&p.sidecar, "retries", "r").await;
    // The dropped message arrives first (topics are consumed independently, so it is waited
    // for), then the retried one comes back from the component: by its third delivery, a wrongly
    // redelivered DROP would have come back as well.
    p.app.wait_for("/drops", 1).await;
    p.app.wait_for("/retries", 3).await;
    assert_eq!(p.app.received_on("/drops").len(), 1, "DROP must be acked");
}

/// No matching rule (and no default route): the event is dropped, to the dead-letter topic when
/// there is one, before anything is sent to the app (daprd's subscription handler in
/// `pkg/runtime/subscription/subscription.go`). An empty `match` matches everything.
pub async fn an_event_matching_no_rule_is_dead_lettered(backend: &Backend) {
    let subs = json!([
        {"pubsubname": PUBSUB, "topic": "picky", "deadLetterTopic": "picky-dlq",
         "routes": {"rules": [{"match": "event.data.case == \"wanted\"", "path": "/wanted"}]}},
        {"pubsubname": PUBSUB, "topic": "any", "routes": {"rules": [{"match": "", "path": "/any"}]}},
        sub("picky-dlq", "/dlq"),
    ]);
    let p = Pair::start(
        "picky-app",
        subs,
        &[("components.yaml", backend.components())],
    )
    .await;
    publish_case(&p.sidecar, "picky", "unwanted").await;
    publish_case(&p.sidecar, "picky", "wanted").await;
    publish_case(&p.sidecar, "any", "whatever").await;
    let dead = p.app.wait_for("/dlq", 1).await;
    assert_eq!(case_of(&dead[0]), "unwanted");
    let wanted = p.app.wait_for("/wanted", 1).await;
    assert_eq!(case_of(&wanted[0]), "wanted");
    p.app.wait_for("/any", 1).await;
}

/// An event published while its subscriber has never run. The brokers differ here, by design:
/// a Redis stream keeps it and the subscriber's new consumer group starts at the beginning of the
/// stream (`XGROUP CREATE ... 0`), so it is delivered once the app subscribes; a Kafka topic
/// keeps it too, and the test component's `initialOffset: oldest` starts the new group at the
/// oldest record (with the default `newest` the group would skip it); the in-memory broker lives
/// in the sidecar process, so a sidecar started later has never seen it.
pub async fn an_event_published_before_the_subscriber_ever_ran(backend: &Backend) {
    let dir = resources_dir(&[("components.yaml", backend.components())]);
    let mut publisher = Sidecar::start(SidecarSpec {
        app_id: "history-app".into(),
        resources: vec![dir.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    publish_case(&publisher, "history", "early").await;
    publisher.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(publisher.proc.wait_exit().await.success());

    let p = Pair::start(
        "history-app",
        json!([sub("history", "/history")]),
        &[("components.yaml", backend.components())],
    )
    .await;
    publish_case(&p.sidecar, "history", "late").await;
    let expected: &[&str] = match backend {
        Backend::Redis { .. } | Backend::Kafka { .. } => &["early", "late"],
        Backend::InMemory => &["late"],
    };
    let mut cases = p
        .app
        .wait_until("the expected events", |all| {
            expected
                .iter()
                .all(|case| count(all, "/history", case) >= 1)
                .then(|| {
                    all.iter()
                        .filter(|r| r.path == "/history")
                        .map(case_of)
                        .collect::<Vec<_>>()
                })
        })
        .await;
    // Deliveries may run concurrently: the order is not part of the contract.
    cases.sort();
    assert_eq!(cases, expected, "{backend:?}");
}
