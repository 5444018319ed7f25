//! The shipped `deploy/dapr/resiliency.yaml`, loaded by the real `sidecar` binary next to the
//! local in-memory components of the same names: a subscriber that fails every delivery for a
//! minute still gets every event once it recovers (none dead-lettered), and a poison message is
//! dead-lettered at once while the other topics keep flowing.

use crate::support::*;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const APP: &str = "email-worker";
const DEAD: &str = "email-worker-dead-letters";

fn shipped() -> Vec<(&'static str, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    [
        ("pubsub.yaml", "deploy/local/in-memory/pubsub.yaml"),
        ("statestore.yaml", "deploy/local/in-memory/statestore.yaml"),
        ("resiliency.yaml", "deploy/dapr/resiliency.yaml"),
    ]
    .into_iter()
    .map(|(name, from)| {
        let text = std::fs::read_to_string(root.join(from)).unwrap();
        (name, without_scopes(&text))
    })
    .collect()
}

/// The component without its `publishingScopes`/`subscriptionScopes` entries: these tests
/// publish through the subscriber's own sidecar, which the shipped scopes forbid (only task-api
/// and reminder-scheduler publish the business topics), and scopes are not what they test.
fn without_scopes(text: &str) -> String {
    let mut out = Vec::new();
    let mut skip_value = false;
    for line in text.lines() {
        if skip_value {
            skip_value = false;
            assert!(line.trim_start().starts_with("value:"), "{line}");
            continue;
        }
        let entry = line.trim_start();
        if entry == "- name: publishingScopes" || entry == "- name: subscriptionScopes" {
            skip_value = true;
            continue;
        }
        out.push(line);
    }
    out.join("\n") + "\n"
}

fn subs() -> Value {
    json!([
        {"pubsubname": PUBSUB, "topic": "task-created", "route": "/created", "deadLetterTopic": DEAD},
        {"pubsubname": PUBSUB, "topic": "task-due-soon", "route": "/due", "deadLetterTopic": DEAD},
        {"pubsubname": PUBSUB, "topic": DEAD, "route": "/dead"},
    ])
}

async fn start() -> Pair {
    let files = shipped();
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    Pair::start(APP, subs(), &refs).await
}

type Delivered = Arc<Mutex<BTreeSet<(String, u64)>>>;

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_failing_for_a_minute_gets_every_event_and_nothing_is_dead_lettered() {
    let pair = start().await;
    let down = Arc::new(AtomicBool::new(true));
    let delivered: Delivered = Arc::default();
    let (flag, ok) = (down.clone(), delivered.clone());
    pair.app.respond_with(move |r| {
        if r.path == "/dead" {
            return (StatusCode::OK, String::new());
        }
        if flag.load(Ordering::SeqCst) {
            return (StatusCode::SERVICE_UNAVAILABLE, String::new());
        }
        let n = r.json()["data"]["n"].as_u64().unwrap();
        ok.lock().unwrap().insert((r.path.clone(), n));
        (StatusCode::OK, String::new())
    });
    let s = &pair.sidecar;
    let outage = Instant::now();
    let mut expected = BTreeSet::new();
    for n in 0..10u64 {
        for (topic, route) in [("task-created", "/created"), ("task-due-soon", "/due")] {
            let r = s
                .publish(
                    PUBSUB,
                    topic,
                    "",
                    Some("application/json"),
                    json!({"n": n}).to_string(),
                )
                .await;
            assert_eq!(r.status(), 204);
            expected.insert((route.to_owned(), n));
        }
    }
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(outage.elapsed())).await;
    let seen_while_down = pair.app.received().len();
    assert!(
        seen_while_down > 20,
        "the sidecar kept retrying during the outage"
    );
    down.store(false, Ordering::SeqCst);
    // The longest wait between two retries is 15 s x 1.5.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if *delivered.lock().unwrap() == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every event was delivered after the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        pair.app.received_on("/dead").is_empty(),
        "nothing was dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_is_dead_lettered_while_other_topics_flow() {
    let pair = start().await;
    pair.app.respond_with(|r| {
        if r.path != "/dead" && r.json()["data"]["poison"] == json!(true) {
            (StatusCode::OK, r#"{"status":"DROP"}"#.into())
        } else {
            (StatusCode::OK, String::new())
        }
    });
    let s = &pair.sidecar;
    let body = |n: u64, poison: bool| json!({"n": n, "poison": poison}).to_string();
    assert_eq!(
        s.publish(
            PUBSUB,
            "task-created",
            "",
            Some("application/json"),
            body(99, true)
        )
        .await
        .status(),
        204
    );
    for n in 0..20 {
        for topic in ["task-created", "task-due-soon"] {
            assert_eq!(
                s.publish(PUBSUB, topic, "", Some("application/json"), body(n, false))
                    .await
                    .status(),
                204
            );
        }
    }
    let dead = pair.app.wait_for("/dead", 1).await;
    assert_eq!(dead[0].json()["data"]["n"], 99);
    pair.app.wait_for("/created", 21).await;
    pair.app.wait_for("/due", 20).await;
    assert_eq!(
        pair.app.received_on("/dead").len(),
        1,
        "only the poison message was dead-lettered"
    );
    assert_eq!(
        pair.app
            .received_on("/created")
            .iter()
            .filter(|r| r.json()["data"]["n"] == 99)
            .count(),
        1,
        "DROP is not retried"
    );
}
