//! Scenarios of bulk subscribe (`bulkSubscribe`, the Dapr docs page "Publish and subscribe to
//! bulk messages"), run against each [`Backend`]: batch sizes, per-entry statuses, per-entry dead
//! letters, a batch the app answers too slowly, programmatic and declarative subscriptions. The
//! test entry points live in `conformance_bulk.rs`, `conformance_redis.rs` and
//! `conformance_kafka.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::*;

/// Publishes `{"case": <case>}` on `topic`.
async fn publish_case(sc: &Sidecar, topic: &str, case: &str) {
    let body = json!({"case": case}).to_string();
    let resp = sc
        .publish(PUBSUB, topic, "", Some("application/json"), body)
        .await;
    assert_no_content(resp).await;
}

/// A programmatic bulk subscription.
fn bulk_sub(topic: &str, route: &str, max: i64, await_ms: i64, dlq: Option<&str>) -> Value {
    let mut s = json!({
        "pubsubname": PUBSUB, "topic": topic, "route": route,
        "bulkSubscribe": {"enabled": true, "maxMessagesCount": max, "maxAwaitDurationMs": await_ms},
    });
    if let Some(dlq) = dlq {
        s["deadLetterTopic"] = json!(dlq);
    }
    s
}

/// The batches the app got on `path`: each as (entry id, case) pairs.
fn batches(all: &[Received], path: &str) -> Vec<Vec<(String, String)>> {
    all.iter()
        .filter(|r| r.path == path)
        .map(|r| {
            r.json()["entries"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    (
                        e["entryId"].as_str().unwrap_or_default().to_owned(),
                        e["event"]["data"]["case"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    )
                })
                .collect()
        })
        .collect()
}

fn single_case(r: &Received) -> String {
    r.json()["data"]["case"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Answers each entry of a batch by its case: `ok` SUCCESS, `drop` DROP, `retry` RETRY,
/// `lower` the unknown `success`, `missing` left out of the statuses.
fn per_entry_statuses(r: &Received) -> (StatusCode, String) {
    let statuses: Vec<Value> = r.json()["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let status = match e["event"]["data"]["case"].as_str().unwrap_or_default() {
                "missing" => return None,
                "drop" => "DROP",
                "retry" => "RETRY",
                "lower" => "success",
                _ => "SUCCESS",
            };
            Some(json!({"entryId": e["entryId"], "status": status}))
        })
        .collect();
    (StatusCode::OK, json!({"statuses": statuses}).to_string())
}

/// A batch flushes at `maxMessagesCount` entries (here long before its 60 s wait), and a batch
/// that does not fill goes when its first entry has waited `maxAwaitDurationMs`. The envelope
/// has daprd's shape.
pub async fn batches_flush_at_max_messages_or_after_max_await(backend: &Backend) {
    let subs = json!([
        bulk_sub("counted", "/counted", 3, 60_000, None),
        bulk_sub("timed", "/timed", 100, 150, None),
    ]);
    let p = Pair::start(
        "bulk-size-app",
        subs,
        &[("components.yaml", backend.components())],
    )
    .await;
    p.app.respond_with(per_entry_statuses);
    for i in 0..6 {
        publish_case(&p.sidecar, "counted", &format!("ok-{i}")).await;
    }
    let counted = p
        .app
        .wait_until("two full batches", |all| {
            let b = batches(all, "/counted");
            (b.iter().map(Vec::len).sum::<usize>() == 6).then_some(b)
        })
        .await;
    assert_eq!(
        counted.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3],
        "flushed at maxMessagesCount"
    );
    let mut cases: Vec<String> = counted.iter().flatten().map(|(_, c)| c.clone()).collect();
    cases.sort();
    assert_eq!(cases, (0..6).map(|i| format!("ok-{i}")).collect::<Vec<_>>());

    publish_case(&p.sidecar, "timed", "ok-a").await;
    publish_case(&p.sidecar, "timed", "ok-b").await;
    let timed = p
        .app
        .wait_until("the timed batch(es)", |all| {
            let b = batches(all, "/timed");
            (b.iter().map(Vec::len).sum::<usize>() == 2).then_some(b)
        })
        .await;
    assert!(
        timed.iter().all(|b| !b.is_empty() && b.len() < 100),
        "sent by the timer, not the count: {timed:?}"
    );

    let request = &p.app.received_on("/counted")[0];
    assert_eq!(
        request.header("content-type").as_deref(),
        Some("application/json")
    );
    let body = request.json();
    assert_eq!(body["type"], "com.dapr.event.sent.bulk");
    assert_eq!(body["topic"], "counted");
    assert_eq!(body["pubsubname"], PUBSUB);
    assert!(body["id"].as_str().is_some_and(|id| !id.is_empty()));
    let entry = &body["entries"][0];
    assert_eq!(entry["contentType"], "application/cloudevents+json");
    assert_eq!(
        entry["event"]["topic"], "counted",
        "the event is the CloudEvent, parsed"
    );
    assert!(entry["entryId"].as_str().is_some_and(|id| !id.is_empty()));
}

/// While the app holds a full batch, the next one fills and is sent: a subscription delivers
/// more than one batch per round trip to the app. (When only one batch's worth of messages
/// could wait, every one of them was held by the batch at the app, and the second batch came
/// only after the first was answered.)
pub async fn the_next_batch_fills_and_goes_while_the_app_holds_one(backend: &Backend) {
    const HOLD: Duration = Duration::from_secs(8);
    let subs = json!([bulk_sub("held", "/held", 20, 60_000, None)]);
    let p = Pair::start(
        "bulk-pipeline-app",
        subs,
        &[("components.yaml", backend.components())],
    )
    .await;
    p.app.respond_with(per_entry_statuses);
    *p.app.state.slow.lock().unwrap() = Some(("/held".to_owned(), HOLD));
    for i in 0..40 {
        publish_case(&p.sidecar, "held", &format!("ok-{i}")).await;
    }
    p.app.wait_for("/held", 1).await;
    let first_at = tokio::time::Instant::now();
    let both = p
        .app
        .wait_until("a second batch", |all| {
            let b = batches(all, "/held");
            (b.len() >= 2).then_some(b)
        })
        .await;
    let gap = first_at.elapsed();
    assert!(
        gap < HOLD / 2,
        "the second batch came {gap:?} after the first, which the app held for {HOLD:?}"
    );
    assert_eq!(both[0].len(), 20, "full batches: {both:?}");
    assert_eq!(both[1].len(), 20, "full batches: {both:?}");
}

/// Per-entry statuses under an inbound policy of 2 retries: only the failed entries are sent
/// again (with their entry ids), DROP is dead-lettered at once, and each entry still failing
/// (RETRY, an unknown status, left out) is dead-lettered on its own.
pub async fn partial_failures_retry_only_failed_entries_and_dead_letter_each(backend: &Backend) {
    let subs = json!([
        bulk_sub("mixed", "/mixed", 10, 200, Some("mixed-dlq")),
        sub("mixed-dlq", "/dlq"),
    ]);
    let p = Pair::start(
        "bulk-partial-app",
        subs,
        &[
            ("components.yaml", backend.components()),
            ("resiliency.yaml", RESILIENCY),
        ],
    )
    .await;
    p.app.respond_with(|r| {
        if r.path == "/mixed" {
            per_entry_statuses(r)
        } else {
            (StatusCode::OK, String::new())
        }
    });
    let cases = ["ok-1", "retry", "drop", "missing", "lower", "ok-2"];
    for case in cases {
        publish_case(&p.sidecar, "mixed", case).await;
    }
    let failed = ["retry", "drop", "missing", "lower"];
    let dead = p
        .app
        .wait_until("each failed entry dead-lettered", |all| {
            let dead: Vec<String> = all
                .iter()
                .filter(|r| r.path == "/dlq")
                .map(single_case)
                .collect();
            failed
                .iter()
                .all(|c| dead.iter().any(|d| d == c))
                .then_some(dead)
        })
        .await;
    // Dead-lettered entry by entry, each once; the successes never.
    let mut dead_sorted = dead.clone();
    dead_sorted.sort();
    let mut expected: Vec<String> = failed.iter().map(|c| c.to_string()).collect();
    expected.sort();
    assert_eq!(dead_sorted, expected);

    let all = p.app.received();
    let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, case) in batches(&all, "/mixed").into_iter().flatten() {
        sent.entry(case).or_default().push(id);
    }
    for case in ["ok-1", "ok-2", "drop"] {
        assert_eq!(sent[case].len(), 1, "{case}: settled by the first answer");
    }
    for case in ["retry", "missing", "lower"] {
        let ids = &sent[case];
        assert_eq!(ids.len(), 3, "{case}: sent 1 + 2 times");
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "{case}: same entry id on every retry"
        );
    }
    let dead_drop = all
        .iter()
        .find(|r| r.path == "/dlq" && single_case(r) == "drop")
        .unwrap()
        .json();
    assert_eq!(
        dead_drop["topic"], "mixed",
        "the original message is dead-lettered"
    );
}

/// Inbound policy with a timeout shorter than the app takes, and one retry.
const SLOW_RESILIENCY: &str = r#"apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: slow-resiliency
spec:
  policies:
    timeouts:
      short: 300ms
    retries:
      once:
        policy: constant
        duration: 50ms
        maxRetries: 1
  targets:
    components:
      todo-pubsub:
        inbound:
          timeout: short
          retry: once
"#;

/// A batch the app answers after the policy's timeout fails every entry: the whole batch is
/// sent again, then every entry is dead-lettered. An error status fails every entry alike, and
/// a 2xx answer that is not a statuses object too; 404 drops the batch without dead letters.
pub async fn a_batch_answered_too_slowly_or_badly_fails_every_entry(backend: &Backend) {
    let subs = json!([
        bulk_sub("slow", "/slow", 10, 100, Some("bulk-dlq")),
        bulk_sub("broken", "/broken", 10, 100, Some("bulk-dlq")),
        bulk_sub("gone", "/gone", 10, 100, Some("bulk-dlq")),
        sub("bulk-dlq", "/dlq"),
    ]);
    let p = Pair::start(
        "bulk-slow-app",
        subs,
        &[
            ("components.yaml", backend.components()),
            ("resiliency.yaml", SLOW_RESILIENCY),
        ],
    )
    .await;
    *p.app.state.slow.lock().unwrap() = Some(("/slow".into(), Duration::from_secs(2)));
    p.app.respond_with(|r| match r.path.as_str() {
        "/slow" => per_entry_statuses(r),
        "/broken" if single_case_of_first(r) == "500" => {
            (StatusCode::INTERNAL_SERVER_ERROR, String::new())
        }
        "/broken" => (StatusCode::OK, "OK".into()),
        "/gone" => (StatusCode::NOT_FOUND, String::new()),
        _ => (StatusCode::OK, String::new()),
    });
    publish_case(&p.sidecar, "slow", "ok-slow-1").await;
    publish_case(&p.sidecar, "slow", "ok-slow-2").await;
    publish_case(&p.sidecar, "broken", "500").await;
    publish_case(&p.sidecar, "broken", "text").await;
    publish_case(&p.sidecar, "gone", "404").await;
    let expected = ["ok-slow-1", "ok-slow-2", "500", "text"];
    p.app
        .wait_until("every failed entry dead-lettered", |all| {
            expected
                .iter()
                .all(|c| all.iter().any(|r| r.path == "/dlq" && single_case(r) == *c))
                .then_some(())
        })
        .await;
    // A later batch on the 404 route: once it is answered, the first one was settled too.
    publish_case(&p.sidecar, "gone", "404-sentinel").await;
    p.app
        .wait_until("the sentinel batch", |all| {
            batches(all, "/gone")
                .iter()
                .flatten()
                .any(|(_, c)| c == "404-sentinel")
                .then_some(())
        })
        .await;
    let all = p.app.received();
    let slow: Vec<String> = batches(&all, "/slow")
        .into_iter()
        .flatten()
        .map(|(_, c)| c)
        .collect();
    for case in ["ok-slow-1", "ok-slow-2"] {
        assert_eq!(
            slow.iter().filter(|c| *c == case).count(),
            2,
            "{case}: timed out, sent again with the whole batch"
        );
    }
    let broken: Vec<String> = batches(&all, "/broken")
        .into_iter()
        .flatten()
        .map(|(_, c)| c)
        .collect();
    for case in ["500", "text"] {
        assert_eq!(
            broken.iter().filter(|c| *c == case).count(),
            2,
            "{case}: 1 + 1 attempts"
        );
    }
    assert!(
        !all.iter()
            .any(|r| r.path == "/dlq" && single_case(r).starts_with("404")),
        "404 drops the batch without dead letters"
    );
    assert_eq!(
        batches(&all, "/gone")
            .iter()
            .flatten()
            .filter(|(_, c)| c == "404")
            .count(),
        1,
        "404 is not retried"
    );
}

/// The case of a batch's first entry.
fn single_case_of_first(r: &Received) -> String {
    r.json()["entries"][0]["event"]["data"]["case"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `spec.bulkSubscribe` of a declarative subscription.
pub async fn declarative_bulk_subscription(backend: &Backend) {
    let subscription = format!(
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: bulk-decl\nspec:\n  \
         pubsubname: {PUBSUB}\n  topic: declared\n  routes:\n    default: /declared\n  \
         bulkSubscribe:\n    enabled: true\n    maxMessagesCount: 2\n    maxAwaitDurationMs: 60000\n"
    );
    let subscription: &'static str = Box::leak(subscription.into_boxed_str());
    let p = Pair::start(
        "bulk-decl-app",
        json!([]),
        &[
            ("components.yaml", backend.components()),
            ("subscription.yaml", subscription),
        ],
    )
    .await;
    p.app.respond_with(per_entry_statuses);
    for i in 0..4 {
        publish_case(&p.sidecar, "declared", &format!("ok-{i}")).await;
    }
    let got = p
        .app
        .wait_until("two batches of two", |all| {
            let b = batches(all, "/declared");
            (b.iter().map(Vec::len).sum::<usize>() == 4).then_some(b)
        })
        .await;
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
}
