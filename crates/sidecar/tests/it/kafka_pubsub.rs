//! `pubsub.kafka` delivery rules on a real broker (tansu, one per test): per-partition order and
//! blocking, the component's own retries and skips, commits, where keys land, what the app
//! receives, and the consumer group's starting offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use serde_json::{Value, json};
use sidecar_kafka::partitioner::sarama_partition;
use sidecar_testing::KafkaBroker;

use crate::support::*;

/// `todo-pubsub` on `broker` with `extra` metadata (name, value).
pub(crate) fn kafka_component(broker: &KafkaBroker, extra: &[(&str, &str)]) -> String {
    let mut text = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {PUBSUB}\nspec:\n  \
         type: pubsub.kafka\n  version: v1\n  metadata:\n    - name: brokers\n      value: \"{}\"\n\
         \x20   - name: authType\n      value: none\n",
        broker.brokers()
    );
    for (k, v) in extra {
        text.push_str(&format!("    - name: {k}\n      value: \"{v}\"\n"));
    }
    text
}

/// Publishes `body` as JSON on `topic` with record key `key`.
pub(crate) async fn publish_keyed(sc: &Sidecar, topic: &str, key: &str, body: Value) {
    let resp = sc
        .publish(
            PUBSUB,
            topic,
            &format!("?metadata.partitionKey={key}"),
            Some("application/json"),
            body.to_string(),
        )
        .await;
    assert_no_content(resp).await;
}

fn case_of(r: &Received) -> String {
    r.json()["data"]["case"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Keys that Sarama's hash puts on each of `partitions` partitions, `per` of them each.
fn keys_by_partition(partitions: i32, per: usize) -> Vec<Vec<String>> {
    let mut by = vec![Vec::new(); usize::try_from(partitions).unwrap()];
    for n in 0.. {
        let key = format!("key-{n}");
        let p = usize::try_from(sarama_partition(key.as_bytes(), partitions)).unwrap();
        if by[p].len() < per {
            by[p].push(key);
        }
        if by.iter().all(|keys| keys.len() == per) {
            break;
        }
    }
    by
}

/// daprd's Kafka consumer handles a partition's messages one at a time and retries a refused
/// one (every 5 s by default, here 200 ms) before the next (`consumer.go ConsumeClaim`): the
/// refused message holds back only the messages behind it on its partition. Every delivery
/// says which partition it came from, and that is where Sarama's hash puts its key.
#[tokio::test]
async fn a_refused_message_blocks_only_its_partition() {
    let broker = KafkaBroker::start();
    broker.create_topic("work", 3);
    let component = kafka_component(
        &broker,
        &[("initialOffset", "oldest"), ("backOffDuration", "200ms")],
    );
    let p = Pair::start(
        "worker-app",
        json!([sub("work", "/work")]),
        &[("components.yaml", component.as_str())],
    )
    .await;
    let released = Arc::new(AtomicBool::new(false));
    let gate = released.clone();
    p.app.respond_with(move |r| {
        if case_of(r) == "stuck" && !gate.load(Ordering::SeqCst) {
            (StatusCode::OK, r#"{"status":"RETRY"}"#.into())
        } else {
            (StatusCode::OK, String::new())
        }
    });
    let keys = keys_by_partition(3, 2);
    let stuck_key = keys[0][0].clone();
    publish_keyed(&p.sidecar, "work", &stuck_key, json!({"case": "stuck"})).await;
    publish_keyed(&p.sidecar, "work", &keys[0][1], json!({"case": "behind"})).await;
    let others: Vec<String> = keys[1].iter().chain(&keys[2]).cloned().collect();
    for key in &others {
        publish_keyed(&p.sidecar, "work", key, json!({"case": key})).await;
    }

    p.app
        .wait_until("other partitions delivered while one is retried", |all| {
            let retried = all.iter().filter(|r| case_of(r) == "stuck").count() >= 3;
            let flowed = others.iter().all(|k| all.iter().any(|r| case_of(r) == *k));
            (retried && flowed).then_some(())
        })
        .await;
    assert!(
        p.app.received().iter().all(|r| case_of(r) != "behind"),
        "a message behind a refused one on its partition must wait"
    );
    for r in p.app.received_on("/work") {
        let key = r.header("__key").unwrap();
        assert_eq!(
            r.header("__partition").unwrap(),
            sarama_partition(key.as_bytes(), 3).to_string(),
            "key {key} is placed by Sarama's FNV-1a hash"
        );
    }

    released.store(true, Ordering::SeqCst);
    p.app
        .wait_until("the held-back message", |all| {
            all.iter().any(|r| case_of(r) == "behind").then_some(())
        })
        .await;
    let all = p.app.received();
    let last_stuck = all.iter().rposition(|r| case_of(r) == "stuck").unwrap();
    let behind = all.iter().position(|r| case_of(r) == "behind").unwrap();
    assert!(behind > last_stuck, "order within the partition is kept");
}

/// Updates of one entity published in order under one key arrive in that order.
#[tokio::test]
async fn a_hundred_updates_of_one_key_arrive_in_order() {
    let broker = KafkaBroker::start();
    broker.create_topic("updates", 3);
    let component = kafka_component(&broker, &[("initialOffset", "oldest")]);
    let p = Pair::start(
        "ordered-app",
        json!([sub("updates", "/updates")]),
        &[("components.yaml", component.as_str())],
    )
    .await;
    for n in 0..100 {
        publish_keyed(&p.sidecar, "updates", "task-1", json!({"n": n})).await;
    }
    let got = p.app.wait_for("/updates", 100).await;
    let order: Vec<i64> = got
        .iter()
        .map(|r| r.json()["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, (0..100).collect::<Vec<_>>());
}

/// With finite `backOff*` retries a message the app keeps refusing is skipped once they run
/// out, and the group commits past it: after a restart it does not come back, while a handled
/// message is not delivered again either.
///
/// The last message before the restart (`last`) only tells the test that the partition's worker
/// is done with the two before it: it is delivered after they were skipped or handled and their
/// offsets stored. `last` itself may still be in flight when the sidecar stops; a delivery the
/// stop cuts off is not committed and comes again, so the test does not count it.
#[tokio::test]
async fn finite_retries_skip_the_message_and_commit_past_it() {
    let broker = KafkaBroker::start();
    broker.create_topic("skips", 1);
    let component = kafka_component(
        &broker,
        &[
            ("initialOffset", "oldest"),
            ("backOffDuration", "100ms"),
            ("backOffMaxRetries", "2"),
        ],
    );
    let files = [("components.yaml", component.as_str())];
    let refuse_bad = |r: &Received| {
        if case_of(r) == "bad" {
            (StatusCode::OK, r#"{"status":"RETRY"}"#.to_owned())
        } else {
            (StatusCode::OK, String::new())
        }
    };
    let mut p = Pair::start("skipper-app", json!([sub("skips", "/skips")]), &files).await;
    p.app.respond_with(refuse_bad);
    publish_keyed(&p.sidecar, "skips", "k", json!({"case": "bad"})).await;
    publish_keyed(&p.sidecar, "skips", "k", json!({"case": "good"})).await;
    publish_keyed(&p.sidecar, "skips", "k", json!({"case": "last"})).await;
    p.app
        .wait_until("the message after the skipped and the handled one", |all| {
            all.iter().any(|r| case_of(r) == "last").then_some(())
        })
        .await;
    let cases: Vec<String> = p.app.received_on("/skips").iter().map(case_of).collect();
    assert_eq!(
        cases,
        ["bad", "bad", "bad", "good", "last"],
        "one attempt and two retries of the refused message, then the others in order"
    );
    p.sidecar.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(p.sidecar.proc.wait_exit().await.success());

    let again = Pair::start("skipper-app", json!([sub("skips", "/skips")]), &files).await;
    again.app.respond_with(refuse_bad);
    publish_keyed(&again.sidecar, "skips", "k", json!({"case": "sentinel"})).await;
    again
        .app
        .wait_until("the sentinel", |all| {
            all.iter().any(|r| case_of(r) == "sentinel").then_some(())
        })
        .await;
    let cases: Vec<String> = again
        .app
        .received_on("/skips")
        .iter()
        .map(case_of)
        .filter(|case| case != "last")
        .collect();
    assert_eq!(
        cases,
        ["sentinel"],
        "skipped and handled messages stay committed"
    );
}

/// What the app receives besides the CloudEvent: the record's key, topic, partition, offset and
/// timestamp, and every publish metadata entry, which travelled as a record header
/// (`consumer.go GetEventMetadata`, `producer.go Publish`).
#[tokio::test]
async fn deliveries_carry_the_record_metadata_and_headers() {
    let broker = KafkaBroker::start();
    broker.create_topic("described", 3);
    let component = kafka_component(&broker, &[("initialOffset", "oldest")]);
    let p = Pair::start(
        "described-app",
        json!([sub("described", "/described")]),
        &[("components.yaml", component.as_str())],
    )
    .await;
    let before = chrono_now_ms();
    let resp = p
        .sidecar
        .publish(
            PUBSUB,
            "described",
            "?metadata.partitionKey=task-9&metadata.origin=kafka-test",
            Some("application/json"),
            "{}",
        )
        .await;
    assert_no_content(resp).await;
    let got = p.app.wait_for("/described", 1).await;
    let r = &got[0];
    assert_eq!(r.header("__key").as_deref(), Some("task-9"));
    assert_eq!(r.header("__topic").as_deref(), Some("described"));
    assert_eq!(
        r.header("__partition").unwrap(),
        sarama_partition(b"task-9", 3).to_string()
    );
    assert_eq!(r.header("__offset").as_deref(), Some("0"));
    let ts: i64 = r.header("__timestamp").unwrap().parse().unwrap();
    assert!((before - 5_000..before + 60_000).contains(&ts), "{ts}");
    assert_eq!(r.header("origin").as_deref(), Some("kafka-test"));
    assert_eq!(r.header("partitionKey").as_deref(), Some("task-9"));
}

fn chrono_now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A group without a committed offset starts at `initialOffset`: `oldest` replays what the topic
/// retains, `newest` (the default) sees only what is published after it joined.
#[tokio::test]
async fn a_new_group_starts_at_its_initial_offset() {
    let broker = KafkaBroker::start();
    broker.create_topic("history", 3);
    let oldest = kafka_component(&broker, &[("initialOffset", "oldest")]);
    let newest = kafka_component(&broker, &[]);
    let dir = resources_dir(&[("components.yaml", oldest.as_str())]);
    let publisher = Sidecar::start(SidecarSpec {
        app_id: "publisher".into(),
        resources: vec![dir.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    for n in 0..5 {
        publish_keyed(
            &publisher,
            "history",
            &format!("k{n}"),
            json!({"case": format!("early-{n}")}),
        )
        .await;
    }

    let replayer = Pair::start(
        "replayer",
        json!([sub("history", "/history")]),
        &[("components.yaml", oldest.as_str())],
    )
    .await;
    let got = replayer.app.wait_for("/history", 5).await;
    let mut cases: Vec<String> = got.iter().map(case_of).collect();
    cases.sort();
    assert_eq!(
        cases,
        (0..5).map(|n| format!("early-{n}")).collect::<Vec<_>>()
    );

    // The new group takes a moment to join and fetch its start offset: publish until one event
    // published after it arrives.
    let newcomer = Pair::start(
        "newcomer",
        json!([sub("history", "/history")]),
        &[("components.yaml", newest.as_str())],
    )
    .await;
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut n = 0;
    while newcomer.app.received_on("/history").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing reached the newest group"
        );
        publish_keyed(
            &publisher,
            "history",
            "late",
            json!({"case": format!("late-{n}")}),
        )
        .await;
        n += 1;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        newcomer
            .app
            .received_on("/history")
            .iter()
            .all(|r| case_of(r).starts_with("late-")),
        "a newest group never sees earlier events"
    );
}

/// Authentication and features the local sidecar does not implement are refused at load,
/// naming the file and the key, instead of connecting without them.
#[tokio::test]
async fn unsupported_metadata_is_refused_naming_file_and_key() {
    let text = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-pubsub\nspec:\n  \
                type: pubsub.kafka\n  version: v1\n  metadata:\n    - name: brokers\n      value: \"127.0.0.1:1\"\n\
                \x20   - name: authType\n      value: oidc\n";
    let dir = resources_dir(&[("kafka-oidc.yaml", text)]);
    let args = vec![
        "--app-id".to_owned(),
        "refused".into(),
        "--dapr-http-port".into(),
        free_port().to_string(),
        "--resources-path".into(),
        dir.path().display().to_string(),
    ];
    let mut proc = Proc::spawn(&args, &[]);
    let status = proc.wait_exit().await;
    assert!(!status.success());
    let err = proc.stderr.text();
    assert!(
        err.contains("kafka-oidc.yaml")
            && err.contains("spec.metadata.authType")
            && err.contains("not supported"),
        "{err}"
    );
}

/// A bulk subscription gets a partition's records in batches: with one partition and a wait of
/// a minute, batches fill up to `maxMessagesCount` (one record in flight per partition, as a
/// single subscription has, would leave each batch waiting out the minute), and each batch's
/// offsets are committed once its statuses are in: a restarted subscriber gets none again.
#[tokio::test]
async fn a_bulk_subscription_gets_one_partitions_records_in_batches() {
    let broker = KafkaBroker::start();
    broker.create_topic("bulk-one", 1);
    let component = kafka_component(&broker, &[("initialOffset", "oldest")]);
    let files = [("components.yaml", component.as_str())];
    let subs = json!([{
        "pubsubname": PUBSUB, "topic": "bulk-one", "route": "/bulk-one",
        "bulkSubscribe": {"enabled": true, "maxMessagesCount": 5, "maxAwaitDurationMs": 60_000},
    }]);
    let all_succeed = |r: &Received| {
        let statuses: Vec<Value> = r.json()["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| json!({"entryId": e["entryId"], "status": "SUCCESS"}))
            .collect();
        (StatusCode::OK, json!({"statuses": statuses}).to_string())
    };
    let mut p = Pair::start("bulk-one-app", subs.clone(), &files).await;
    p.app.respond_with(all_succeed);
    for n in 0..10 {
        publish_keyed(&p.sidecar, "bulk-one", "k", json!({"n": n})).await;
    }
    let sizes = |all: &[Received]| -> Vec<usize> {
        all.iter()
            .filter(|r| r.path == "/bulk-one")
            .map(|r| r.json()["entries"].as_array().map_or(0, Vec::len))
            .collect()
    };
    let got = p
        .app
        .wait_until("ten entries", |all| {
            let s = sizes(all);
            (s.iter().sum::<usize>() == 10).then_some(s)
        })
        .await;
    assert_eq!(got, [5, 5], "batches filled from one partition");

    // A new sidecar in the same group starts after the committed offsets: nothing comes again.
    p.sidecar.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(p.sidecar.proc.wait_exit().await.success());
    let again = Pair::start("bulk-one-app", subs, &files).await;
    again.app.respond_with(all_succeed);
    for n in 10..15 {
        publish_keyed(&again.sidecar, "bulk-one", "k", json!({"n": n})).await;
    }
    let numbers = again
        .app
        .wait_until("the next batch", |all| {
            let n: Vec<i64> = all
                .iter()
                .filter(|r| r.path == "/bulk-one")
                .flat_map(|r| r.json()["entries"].as_array().cloned().unwrap_or_default())
                .filter_map(|e| e["event"]["data"]["n"].as_i64())
                .collect();
            (n.len() >= 5).then_some(n)
        })
        .await;
    assert_eq!(
        numbers,
        (10..15).collect::<Vec<_>>(),
        "no entry delivered twice"
    );
}
