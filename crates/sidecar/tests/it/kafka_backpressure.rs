//! `pubsub.kafka` under a backlog: a partition whose worker falls behind has its fetching paused
//! (`channelBufferSize` records queued) and resumed once the queue has drained, many times over
//! while an app is slower than the broker; every record must still reach the app.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sidecar_testing::KafkaBroker;

use crate::kafka_pubsub::{kafka_component, publish_keyed};
use crate::support::*;

/// The `n` of every entry of every batch received on `path`.
fn numbers_on(all: &[Received], path: &str) -> BTreeSet<i64> {
    all.iter()
        .filter(|r| r.path == path)
        .flat_map(|r| r.json()["entries"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["event"]["data"]["n"].as_i64())
        .collect()
}

/// Every entry of a batch answered SUCCESS.
fn all_succeed(r: &Received) -> (StatusCode, String) {
    let statuses: Vec<Value> = r.json()["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| json!({"entryId": e["entryId"], "status": "SUCCESS"}))
        .collect();
    (StatusCode::OK, json!({"statuses": statuses}).to_string())
}

/// A bulk subscriber slower than the broker (each batch answered after 20 ms) with a queue of 8
/// records per partition: fetching of the one partition is paused and resumed over and over
/// while 600 records, published in concurrent rounds (so several share a record batch), go
/// through, and each of them is delivered.
#[tokio::test]
async fn a_paused_and_resumed_bulk_partition_delivers_every_record() {
    const RECORDS: i64 = 600;
    let broker = KafkaBroker::start();
    broker.create_topic("paced", 1);
    let component = kafka_component(
        &broker,
        &[("initialOffset", "oldest"), ("channelBufferSize", "8")],
    );
    let subs = json!([{
        "pubsubname": PUBSUB, "topic": "paced", "route": "/paced",
        "bulkSubscribe": {"enabled": true, "maxMessagesCount": 10, "maxAwaitDurationMs": 20},
    }]);
    let p = Pair::start(
        "paced-app",
        subs,
        &[("components.yaml", component.as_str())],
    )
    .await;
    p.app.respond_with(all_succeed);
    *p.app.state.slow.lock().unwrap() = Some(("/paced".into(), Duration::from_millis(20)));
    // Twenty publishes at a time: the producer puts each round in a few record batches, so a
    // fetch that resumes after a pause can start in the middle of one.
    for round in 0..RECORDS / 20 {
        let sends = (round * 20..(round + 1) * 20)
            .map(|n| publish_keyed(&p.sidecar, "paced", "k", json!({"n": n})));
        futures::future::join_all(sends).await;
    }
    let expected: BTreeSet<i64> = (0..RECORDS).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = numbers_on(&p.app.received(), "/paced");
        if got == expected {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let missing: Vec<i64> = expected.difference(&got).copied().collect();
            panic!(
                "{} of {RECORDS} records never delivered: {missing:?}",
                missing.len()
            );
        }
        let _ =
            tokio::time::timeout(Duration::from_millis(200), p.app.state.changed.notified()).await;
    }
}
