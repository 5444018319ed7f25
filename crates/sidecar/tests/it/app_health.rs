//! App health checks (`--enable-app-health-check`), as daprd runs them: subscriptions start only
//! after the first successful probe (`/dapr/subscribe` is read then, once); when the app turns
//! unhealthy every subscription stops, so what is published meanwhile waits in the broker (not
//! delivered, not dead-lettered) and invocations of the app are refused; when it is healthy again
//! the same subscriptions are registered anew and the waiting events arrive. Probes carry no
//! `dapr-api-token` and no `dapr-app-id`; the threshold counts failures since the app last turned
//! healthy. The app's probe log is the clock: "nothing was delivered" is checked across probes
//! the sidecar made, not across a sleep. The same scenario runs on the in-memory, the Redis and
//! the Kafka pub/sub.

use crate::support;
use crate::support_redis::RedisServer;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::http::StatusCode;
use sidecar_testing::KafkaBroker;
use support::backend::{Backend, KAFKA_PARTITIONS};
use support::*;

const PROBE: &str = "/app-health";
const APP_TOKEN: &str = "app-token-for-deliveries";

/// What a test app subscribes to: `orders` (dead-lettering to `orders-dlq`) and `orders-dlq`.
fn subscriptions() -> serde_json::Value {
    let mut orders = sub("orders", "/orders");
    orders["deadLetterTopic"] = "orders-dlq".into();
    serde_json::json!([orders, sub("orders-dlq", "/dlq")])
}

/// A sidecar probing `app` every second with `threshold`, on `components`, sending `APP_TOKEN`.
async fn sidecar_for(app: &TestApp, app_id: &str, threshold: u32, components: &str) -> Pair {
    let resources = resources_dir(&[("components.yaml", components)]);
    let mut extra_args: Vec<String> = [
        "--enable-app-health-check",
        "--app-health-check-path",
        PROBE,
        "--app-health-probe-interval",
        "1",
        "--app-health-probe-timeout",
        "500",
        "--app-health-threshold",
    ]
    .map(String::from)
    .to_vec();
    extra_args.push(threshold.to_string());
    let sidecar = Sidecar::start(SidecarSpec {
        app_id: app_id.into(),
        app_port: Some(app.port),
        resources: vec![resources.path().to_path_buf()],
        app_api_token: Some(APP_TOKEN.into()),
        extra_args,
        ..SidecarSpec::default()
    })
    .await;
    sidecar.wait_ready().await;
    Pair {
        app: app.clone(),
        sidecar,
        resources,
    }
}

/// An app whose probe answers 503 while `unhealthy` is set (from its very first probe on), with
/// its sidecar on the in-memory components.
async fn start(app_id: &str, threshold: u32, unhealthy: &Arc<AtomicBool>) -> Pair {
    start_on(app_id, threshold, unhealthy, COMPONENTS).await
}

async fn start_on(
    app_id: &str,
    threshold: u32,
    unhealthy: &Arc<AtomicBool>,
    components: &str,
) -> Pair {
    let app = TestApp::start(subscriptions()).await;
    let flag = unhealthy.clone();
    app.respond_with(move |r| {
        if r.path == PROBE && flag.load(Ordering::SeqCst) {
            (StatusCode::SERVICE_UNAVAILABLE, String::new())
        } else {
            (StatusCode::OK, String::new())
        }
    });
    sidecar_for(&app, app_id, threshold, components).await
}

fn probes(app: &TestApp) -> usize {
    app.received_on(PROBE).len()
}

fn subscribe_calls(app: &TestApp) -> usize {
    app.state.subscribe_calls.lock().unwrap().len()
}

async fn invoke(sidecar: &Sidecar, app_id: &str) -> reqwest::Response {
    http()
        .post(sidecar.url(&format!("/v1.0/invoke/{app_id}/method/hello")))
        .body("hi")
        .send()
        .await
        .unwrap()
}

/// The topics the sidecar is subscribed to now, from `GET /v1.0/metadata`.
async fn subscribed_topics(sidecar: &Sidecar) -> Vec<String> {
    let metadata: serde_json::Value = http()
        .get(sidecar.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    metadata["subscriptions"]
        .as_array()
        .map(|subs| {
            subs.iter()
                .filter_map(|s| s["topic"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_subscribed(sidecar: &Sidecar, want: usize) {
    eventually(&format!("{want} active subscription(s)"), || async {
        (subscribed_topics(sidecar).await.len() == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_unhealthy_app_gets_no_deliveries_or_invocations_until_a_probe_succeeds() {
    let unhealthy = Arc::new(AtomicBool::new(false));
    let pair = start("health-app", 1, &unhealthy).await;
    let (app, sidecar) = (&pair.app, &pair.sidecar);
    wait_subscribed(sidecar, 2).await;
    unhealthy.store(true, Ordering::SeqCst);
    wait_subscribed(sidecar, 0).await;

    let resp = sidecar
        .publish(PUBSUB, "orders", "", Some("application/json"), r#"{"n":1}"#)
        .await;
    assert_no_content(resp).await;
    let invoked = invoke(sidecar, "health-app").await;
    let body = assert_error(invoked, 500, "ERR_DIRECT_INVOKE").await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("not in a healthy state")),
        "{body}"
    );
    // Two more failed probes: a healthy app would have had the message within milliseconds.
    let seen = probes(app);
    app.wait_for(PROBE, seen + 2).await;
    assert!(
        app.received_on("/orders").is_empty(),
        "delivered while unhealthy"
    );
    assert!(
        app.received_on("/hello").is_empty(),
        "invoked while unhealthy"
    );

    unhealthy.store(false, Ordering::SeqCst);
    let flipped_at = app.received().len();
    let delivered = app.wait_for("/orders", 1).await;
    assert_eq!(delivered[0].json()["data"]["n"], 1);
    let all = app.received();
    let first_good_probe = all[flipped_at..]
        .iter()
        .position(|r| r.path == PROBE)
        .map(|i| i + flipped_at)
        .unwrap();
    let delivery = all.iter().position(|r| r.path == "/orders").unwrap();
    assert!(
        delivery > first_good_probe,
        "the delivery came before the probe that found the app healthy"
    );
    let invoked = invoke(sidecar, "health-app").await;
    assert_eq!(invoked.status(), StatusCode::OK);
    assert_eq!(app.received_on("/hello").len(), 1);
}

#[tokio::test]
async fn a_healthy_app_is_cut_off_only_after_threshold_failed_probes_in_a_row() {
    let unhealthy = Arc::new(AtomicBool::new(false));
    let pair = start("flaky-app", 2, &unhealthy).await;
    let (app, sidecar) = (&pair.app, &pair.sidecar);
    let metadata: serde_json::Value = http()
        .get(sidecar.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["appConnectionProperties"]["health"],
        serde_json::json!({
            "healthCheckPath": PROBE,
            "healthProbeInterval": "1s",
            "healthProbeTimeout": "500ms",
            "healthThreshold": 2
        })
    );
    eventually("the app to be found healthy", || async {
        (invoke(sidecar, "flaky-app").await.status() == StatusCode::OK).then_some(())
    })
    .await;

    unhealthy.store(true, Ordering::SeqCst);
    let flipped_at = app.received().len();
    eventually("invocation to be refused", || async {
        (invoke(sidecar, "flaky-app").await.status() == StatusCode::INTERNAL_SERVER_ERROR)
            .then_some(())
    })
    .await;
    let failed_probes = app.received()[flipped_at..]
        .iter()
        .filter(|r| r.path == PROBE)
        .count();
    assert!(
        failed_probes >= 2,
        "cut off after {failed_probes} failed probe(s), threshold 2"
    );

    unhealthy.store(false, Ordering::SeqCst);
    eventually("the app to be healthy again", || async {
        (invoke(sidecar, "flaky-app").await.status() == StatusCode::OK).then_some(())
    })
    .await;
}

#[tokio::test]
async fn subscriptions_wait_for_the_first_successful_probe_and_probes_carry_no_dapr_headers() {
    let unhealthy = Arc::new(AtomicBool::new(true));
    let pair = start("late-app", 1, &unhealthy).await;
    let (app, sidecar) = (&pair.app, &pair.sidecar);
    // Ready (as daprd) although the app has not passed a probe yet; nothing subscribed.
    let seen = probes(app);
    app.wait_for(PROBE, seen + 2).await;
    assert_eq!(subscribe_calls(app), 0, "/dapr/subscribe before a success");
    assert!(subscribed_topics(sidecar).await.is_empty());

    unhealthy.store(false, Ordering::SeqCst);
    wait_subscribed(sidecar, 2).await;
    assert_eq!(subscribe_calls(app), 1);
    let calls = app.state.subscribe_calls.lock().unwrap().clone();
    assert_eq!(
        calls[0].header("dapr-api-token").as_deref(),
        Some(APP_TOKEN)
    );
    for probe in app.received_on(PROBE) {
        assert_eq!(probe.header("dapr-api-token"), None, "token on a probe");
        assert_eq!(probe.header("dapr-app-id"), None, "app id on a probe");
    }
}

#[tokio::test]
async fn the_threshold_counts_failures_since_the_app_last_turned_healthy() {
    // Probes 1-2 succeed; then failure and success alternate: never two failures in a row, but
    // the third failure since the app turned healthy (probe 7) cuts it off, and probe 8 brings it
    // back.
    let app = TestApp::start(subscriptions()).await;
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    app.respond_with(move |r| {
        if r.path != PROBE {
            return (StatusCode::OK, String::new());
        }
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if (3..=7).contains(&n) && n % 2 == 1 {
            (StatusCode::SERVICE_UNAVAILABLE, String::new())
        } else {
            (StatusCode::OK, String::new())
        }
    });
    let pair = sidecar_for(&app, "counting-app", 3, COMPONENTS).await;
    pair.sidecar
        .proc
        .stderr
        .wait_for("app entered unhealthy status")
        .await;
    let log = pair.sidecar.proc.stderr.text();
    let unhealthy_at = count.load(Ordering::SeqCst);
    assert!(unhealthy_at >= 7, "cut off after probe {unhealthy_at}");
    assert_eq!(log.matches("app entered unhealthy status").count(), 1);
    pair.sidecar
        .proc
        .stderr
        .wait_for("app is healthy: starting its subscriptions")
        .await;
    wait_subscribed(&pair.sidecar, 2).await;
    assert_eq!(subscribe_calls(&app), 1, "/dapr/subscribe read again");
}

/// The app turns unhealthy; events published meanwhile are neither delivered nor dead-lettered;
/// healthy again, every one of them arrives exactly once, and `/dapr/subscribe` was read once.
async fn unsubscribed_while_unhealthy_and_nothing_lost(components: &str) {
    let unhealthy = Arc::new(AtomicBool::new(false));
    let pair = start_on("resume-app", 2, &unhealthy, components).await;
    let (app, sidecar) = (&pair.app, &pair.sidecar);
    wait_subscribed(sidecar, 2).await;
    let publish = |n: usize| async move {
        let body = format!(r#"{{"n":{n}}}"#);
        let resp = sidecar
            .publish(PUBSUB, "orders", "", Some("application/json"), body)
            .await;
        assert_no_content(resp).await;
    };
    publish(0).await;
    app.wait_for("/orders", 1).await;

    unhealthy.store(true, Ordering::SeqCst);
    wait_subscribed(sidecar, 0).await;
    for n in 1..=5 {
        publish(n).await;
    }
    let seen = probes(app);
    app.wait_for(PROBE, seen + 2).await;
    assert_eq!(
        app.received_on("/orders").len(),
        1,
        "delivered while unhealthy"
    );

    unhealthy.store(false, Ordering::SeqCst);
    let orders = app.wait_for("/orders", 6).await;
    let ns: Vec<u64> = orders
        .iter()
        .map(|r| r.json()["data"]["n"].as_u64().unwrap())
        .collect();
    let distinct: BTreeSet<u64> = ns.iter().copied().collect();
    assert_eq!(distinct, (0..=5).collect(), "{ns:?}");
    wait_subscribed(sidecar, 2).await;
    // One more probe cycle with both subscriptions active: a dead letter would have arrived.
    let seen = probes(app);
    app.wait_for(PROBE, seen + 1).await;
    assert!(app.received_on("/dlq").is_empty(), "dead-lettered");
    assert_eq!(app.received_on("/orders").len(), 6, "{ns:?}");
    assert_eq!(subscribe_calls(app), 1, "/dapr/subscribe read again");
}

#[tokio::test]
async fn unsubscribed_while_unhealthy_then_every_event_arrives_in_memory() {
    unsubscribed_while_unhealthy_and_nothing_lost(COMPONENTS).await;
}

#[tokio::test]
async fn unsubscribed_while_unhealthy_then_every_event_arrives_on_redis() {
    let redis = RedisServer::start();
    unsubscribed_while_unhealthy_and_nothing_lost(Backend::redis(redis.port()).components()).await;
}

/// On Kafka the stopped subscription leaves its consumer group after committing what it handled;
/// the resumed one joins again and starts at the committed offsets, so the events published
/// meanwhile arrive once each and nothing handled comes back.
#[tokio::test]
async fn unsubscribed_while_unhealthy_then_every_event_arrives_on_kafka() {
    let broker = KafkaBroker::start();
    broker.create_topics(&["orders", "orders-dlq"], KAFKA_PARTITIONS);
    unsubscribed_while_unhealthy_and_nothing_lost(Backend::kafka(broker.port()).components()).await;
}
