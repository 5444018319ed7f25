//! daprd's resiliency rules, one test each, against the real `sidecar` binary: inbound retries
//! (constant, exponential, `maxRetries`, `matching`), circuit breakers on deliveries (open,
//! fail fast and dead-letter without calling the app, half-open, close), one breaker shared by a
//! component's inbound and outbound traffic, state calls (which errors are retried), and the
//! merge of several Resiliency files.

use crate::multi_app::{ready, run, workspace};
use crate::support::*;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn resiliency(name: &str, body: &str) -> String {
    format!("apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: {name}\n{body}")
}

fn dlq_sub(topic: &str, route: &str, dlq: &str) -> Value {
    json!({"pubsubname": PUBSUB, "topic": topic, "route": route, "deadLetterTopic": dlq})
}

fn breaker_is(metrics: &str, target: &str, status: &str) -> bool {
    metrics.lines().any(|l| {
        l.starts_with("dapr_resiliency_cb_state{")
            && l.contains(&format!("target=\"{target}\""))
            && l.contains(&format!("status=\"{status}\""))
            && l.ends_with(" 1")
    })
}

#[tokio::test]
async fn constant_retries_count_max_retries_and_matching_makes_a_4xx_permanent() {
    let policy = resiliency(
        "r",
        "spec:\n  policies:\n    retries:\n      quick: { policy: constant, duration: 20ms, maxRetries: 2, matching: { httpStatusCodes: \"500-599\" } }\n  targets:\n    components:\n      todo-pubsub: { inbound: { retry: quick } }\n",
    );
    let subs = json!([
        dlq_sub("busy", "/busy", "dead"),
        dlq_sub("bad", "/bad", "dead"),
        sub("dead", "/dead"),
    ]);
    let pair = Pair::start(
        "retrier",
        subs,
        &[("c.yaml", COMPONENTS), ("r.yaml", &policy)],
    )
    .await;
    pair.app.respond_with(|r| match r.path.as_str() {
        "/busy" => (StatusCode::SERVICE_UNAVAILABLE, String::new()),
        "/bad" => (StatusCode::BAD_REQUEST, String::new()),
        _ => (StatusCode::OK, String::new()),
    });
    let s = &pair.sidecar;
    assert_eq!(
        s.publish(PUBSUB, "busy", "", None, r#"{"m":1}"#)
            .await
            .status(),
        204
    );
    pair.app.wait_for("/dead", 1).await;
    assert_eq!(
        pair.app.received_on("/busy").len(),
        3,
        "maxRetries 2 = three attempts, then the dead-letter topic"
    );
    assert_eq!(
        s.publish(PUBSUB, "bad", "", None, r#"{"m":2}"#)
            .await
            .status(),
        204
    );
    pair.app.wait_for("/dead", 2).await;
    assert_eq!(
        pair.app.received_on("/bad").len(),
        1,
        "a 400 outside `matching` is not retried"
    );
}

#[tokio::test]
async fn exponential_retries_grow_and_a_retry_answer_is_retried_whatever_matching_says() {
    let policy = resiliency(
        "r",
        "spec:\n  policies:\n    retries:\n      expo: { policy: exponential, maxInterval: 10s, maxRetries: 3, matching: { httpStatusCodes: \"500-599\" } }\n  targets:\n    components:\n      todo-pubsub: { inbound: { retry: expo } }\n",
    );
    let pair = Pair::start(
        "expo",
        json!([dlq_sub("slow", "/slow", "dead"), sub("dead", "/dead")]),
        &[("c.yaml", COMPONENTS), ("r.yaml", &policy)],
    )
    .await;
    // `RETRY` on a 200 has no status code: daprd retries it even with `matching` set.
    pair.app.respond_with(|r| match r.path.as_str() {
        "/slow" => (StatusCode::OK, r#"{"status":"RETRY"}"#.into()),
        _ => (StatusCode::OK, String::new()),
    });
    assert_eq!(
        pair.sidecar
            .publish(PUBSUB, "slow", "", None, "{}")
            .await
            .status(),
        204
    );
    let mut at = Vec::new();
    for n in 1..=4 {
        pair.app.wait_for("/slow", n).await;
        at.push(Instant::now());
    }
    pair.app.wait_for("/dead", 1).await;
    assert_eq!(pair.app.received_on("/slow").len(), 4);
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // Bases 500 ms, 750 ms, 1125 ms, each x uniform[0.5, 1.5] (plus scheduling slack).
    let within = |d: Duration, lo: u64, hi: u64| {
        d >= Duration::from_millis(lo) && d <= Duration::from_millis(hi)
    };
    assert!(within(gaps[0], 240, 900), "{gaps:?}");
    assert!(within(gaps[1], 365, 1300), "{gaps:?}");
    assert!(within(gaps[2], 550, 1850), "{gaps:?}");
}

#[tokio::test]
async fn an_open_inbound_breaker_dead_letters_without_calling_the_app_then_half_opens_and_closes() {
    let ws = workspace(&["a", "b"]);
    std::fs::write(
        ws.path().join("resources/resiliency.yaml"),
        resiliency(
            "inbound-breaker",
            "scopes: [app-a]\nspec:\n  policies:\n    circuitBreakers:\n      cb: { maxRequests: 1, timeout: 2s, trip: \"consecutiveFailures >= 2\" }\n  targets:\n    components:\n      todo-pubsub: { inbound: { circuitBreaker: cb } }\n",
        ),
    )
    .unwrap();
    let app_a = TestApp::start(json!([dlq_sub("orders", "/orders", "orders-dead")])).await;
    let app_b = TestApp::start(json!([sub("orders-dead", "/dead")])).await;
    // app-a's subscription comes late (its first two `/dapr/subscribe` calls fail), so only the
    // sidecar's full readiness, not its outbound health, says a publish has a subscriber.
    *app_a.state.subscribe_failures.lock().unwrap() =
        vec![SubscribeFailure::Drop, SubscribeFailure::Drop];
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    app_a.respond_with(move |_| {
        if flag.load(Ordering::SeqCst) {
            (StatusCode::INTERNAL_SERVER_ERROR, String::new())
        } else {
            (StatusCode::OK, String::new())
        }
    });
    let (a_dapr, b_dapr) = (free_port(), free_port());
    let file = write_run_file(
        ws.path(),
        &format!(
            "version: 1\ncommon: {{ resourcesPaths: [./resources] }}\napps:\n  - {{ appID: app-a, appDirPath: apps/a, daprHTTPPort: {a_dapr}, appPort: {} }}\n  - {{ appID: app-b, appDirPath: apps/b, daprHTTPPort: {b_dapr}, appPort: {} }}\n",
            app_a.port, app_b.port
        ),
    );
    let runner = run(&file);
    eventually("both sidecars ready", || async {
        (ready(a_dapr).await == Some(204) && ready(b_dapr).await == Some(204)).then_some(())
    })
    .await;
    let (a, b) = (
        format!("http://127.0.0.1:{a_dapr}"),
        format!("http://127.0.0.1:{b_dapr}"),
    );
    let publish = |n: u32| {
        let b = b.clone();
        async move {
            let r = http()
                .post(format!("{b}/v1.0/publish/{PUBSUB}/orders"))
                .json(&json!({"n": n}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        }
    };
    for n in 1..=2 {
        publish(n).await;
        app_b.wait_for("/dead", n as usize).await;
    }
    assert_eq!(app_a.received_on("/orders").len(), 2);
    let m = metrics(&a).await;
    assert!(breaker_is(&m, "pubsub_todo-pubsub", "open"), "{m}");
    for n in 3..=4 {
        publish(n).await;
        app_b.wait_for("/dead", n as usize).await;
    }
    assert_eq!(
        app_a.received_on("/orders").len(),
        2,
        "an open breaker dead-letters without calling the app"
    );
    assert!(m.contains("app_id=\"app-a\""), "{m}");

    broken.store(false, Ordering::SeqCst);
    eventually("breaker half-open after its timeout", || async {
        breaker_is(&metrics(&a).await, "pubsub_todo-pubsub", "half-open").then_some(())
    })
    .await;
    publish(5).await;
    app_a.wait_for("/orders", 3).await;
    eventually("breaker closed after maxRequests successes", || async {
        breaker_is(&metrics(&a).await, "pubsub_todo-pubsub", "closed").then_some(())
    })
    .await;
    assert_eq!(
        app_b.received_on("/dead").len(),
        4,
        "the healthy delivery was not dead-lettered"
    );
    let m = metrics(&a).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("dapr_resiliency_cb_rejected_total{") && l.ends_with(" 2")),
        "{m}"
    );
    drop(runner);
}

#[tokio::test]
async fn one_breaker_serves_a_components_inbound_and_outbound_traffic() {
    let policy = resiliency(
        "shared",
        "spec:\n  policies:\n    circuitBreakers:\n      cb: { timeout: 1h, trip: \"consecutiveFailures >= 2\" }\n  targets:\n    components:\n      todo-pubsub: { inbound: { circuitBreaker: cb }, outbound: { circuitBreaker: cb } }\n",
    );
    let pair = Pair::start(
        "sharer",
        json!([sub("jobs", "/jobs")]),
        &[("c.yaml", COMPONENTS), ("r.yaml", &policy)],
    )
    .await;
    pair.app
        .respond_with(|_| (StatusCode::INTERNAL_SERVER_ERROR, String::new()));
    let s = &pair.sidecar;
    assert_eq!(
        s.publish(PUBSUB, "jobs", "", None, "{}").await.status(),
        204,
        "closed: the publish runs"
    );
    // No dead-letter topic: the component redelivers, and the second failed delivery trips.
    pair.app.wait_for("/jobs", 2).await;
    eventually("breaker open", || async {
        breaker_is(&metrics(&s.base).await, "pubsub_todo-pubsub", "open").then_some(())
    })
    .await;
    // The change is also in the log at warn, naming the component and the new state, so an
    // operator sees it without turning debug logging on.
    eventually("the breaker's change logged at warn", || async {
        let log = s.proc.stdout.text() + &s.proc.stderr.text();
        log.lines()
            .any(|l| {
                l.contains("WARN")
                    && l.contains("circuit breaker changed state")
                    && l.contains("pubsub_todo-pubsub")
                    && l.contains("state=\"open\"")
            })
            .then_some(())
    })
    .await;
    let body = assert_error(
        s.publish(PUBSUB, "jobs", "", None, "{}").await,
        500,
        "ERR_PUBSUB_PUBLISH_MESSAGE",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker is open"),
        "{body}"
    );
}

#[tokio::test]
async fn state_saves_treat_etag_errors_as_permanent_while_deletes_and_transactions_retry_them() {
    let policy = resiliency(
        "state",
        "spec:\n  policies:\n    retries:\n      r: { policy: constant, duration: 10ms, maxRetries: 3 }\n    circuitBreakers:\n      cb: { timeout: 1h, trip: \"consecutiveFailures >= 3\" }\n  targets:\n    components:\n      todo-state: { outbound: { retry: r, circuitBreaker: cb } }\n      shared-state: { outbound: { retry: r, circuitBreaker: cb } }\n",
    );
    let pair = Pair::start(
        "stater",
        json!([]),
        &[("c.yaml", COMPONENTS), ("r.yaml", &policy)],
    )
    .await;
    let s = &pair.sidecar;
    let save = |store: &'static str, etag: Option<&'static str>| {
        let mut item = json!({"key": "k", "value": 1});
        if let Some(e) = etag {
            item["etag"] = json!(e);
        }
        http()
            .post(s.url(&format!("/v1.0/state/{store}")))
            .json(&json!([item]))
            .send()
    };
    for store in [STATE, "shared-state"] {
        assert_eq!(save(store, None).await.unwrap().status(), 204);
    }
    // Two conflicting saves: one attempt each (a third failure in a row would trip the breaker).
    for _ in 0..2 {
        assert_error(
            save(STATE, Some("999")).await.unwrap(),
            409,
            "ERR_STATE_SAVE",
        )
        .await;
    }
    let got = http()
        .get(s.url(&format!("/v1.0/state/{STATE}/k")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.status(),
        200,
        "saves were not retried: the breaker stayed closed"
    );
    assert!(breaker_is(
        &metrics(&s.base).await,
        "statestore_todo-state",
        "closed"
    ));

    // A conflicting delete is retried: its third failure opens the breaker, the fourth attempt
    // is refused.
    let del = http()
        .delete(s.url(&format!("/v1.0/state/{STATE}/k")))
        .header("if-match", "999")
        .send()
        .await
        .unwrap();
    let body = assert_error(del, 500, "ERR_STATE_DELETE").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker is open"),
        "{body}"
    );
    let got = http()
        .get(s.url(&format!("/v1.0/state/{STATE}/k")))
        .send()
        .await
        .unwrap();
    let body = assert_error(got, 500, "ERR_STATE_GET").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker is open"),
        "{body}"
    );

    // Same for a transaction whose operation conflicts, on the other store's own breaker.
    let tx = http()
        .post(s.url("/v1.0/state/shared-state/transaction"))
        .json(&json!({"operations": [{"operation": "upsert", "request": {"key": "k", "value": 2, "etag": "999"}}]}))
        .send()
        .await
        .unwrap();
    let body = assert_error(tx, 500, "ERR_STATE_TRANSACTION").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker is open"),
        "{body}"
    );
    let m = metrics(&s.base).await;
    assert!(
        breaker_is(&m, "statestore_shared-state", "open")
            && breaker_is(&m, "statestore_todo-state", "open"),
        "{m}"
    );
}

#[tokio::test]
async fn resiliency_files_merge_in_load_order_within_their_scopes() {
    let first = resiliency(
        "first",
        "spec:\n  policies:\n    retries:\n      r: { duration: 10ms, maxRetries: 5 }\n  targets:\n    components:\n      todo-pubsub: { inbound: { retry: r } }\n",
    );
    // Later in load order: replaces policy `r` whole.
    let second = resiliency(
        "second",
        "spec:\n  policies:\n    retries:\n      r: { duration: 10ms, maxRetries: 1 }\n",
    );
    let elsewhere = resiliency(
        "elsewhere",
        "scopes: [someone-else]\nspec:\n  policies:\n    retries:\n      r: { duration: 10ms, maxRetries: 7 }\n",
    );
    // Bad: its policy before the error counts, its targets do not.
    let bad = resiliency(
        "bad",
        "spec:\n  policies:\n    timeouts:\n      t: soon\n  targets:\n    components:\n      todo-pubsub: { inbound: { retry: none } }\n",
    );
    let pair = Pair::start(
        "merger",
        json!([dlq_sub("m", "/m", "dead"), sub("dead", "/dead")]),
        &[
            ("a.yaml", COMPONENTS),
            ("b1.yaml", &first),
            ("b2.yaml", &second),
            ("b3.yaml", &elsewhere),
            ("b4.yaml", &bad),
        ],
    )
    .await;
    pair.app.respond_with(|r| match r.path.as_str() {
        "/m" => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
        _ => (StatusCode::OK, String::new()),
    });
    assert_eq!(
        pair.sidecar
            .publish(PUBSUB, "m", "", None, "{}")
            .await
            .status(),
        204
    );
    pair.app.wait_for("/dead", 1).await;
    assert_eq!(
        pair.app.received_on("/m").len(),
        2,
        "the later `r` (maxRetries 1) applies"
    );
    let err = pair.sidecar.proc.stdout.text() + &pair.sidecar.proc.stderr.text();
    assert!(
        err.contains("b4.yaml") && err.contains("spec.policies.timeouts.t"),
        "the bad file is named with its field:\n{err}"
    );
}
