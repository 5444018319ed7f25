//! `pubsub.redis` (Redis Streams) through real sidecars and apps against a private
//! `redis-server`: the stream layout daprd uses, fan-out across consumer groups, competition
//! inside a group, acks, redelivery of pending entries and history for new groups.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_redis;

use redis::Commands;
use redis::streams::{StreamPendingReply, StreamRangeReply};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use support_redis::{App, RedisServer};

/// Small redelivery timings so the tests stay fast.
const FAST: &[(&str, &str)] = &[("processingTimeout", "300"), ("redeliverInterval", "100ms")];

async fn publish(endpoint: &str, topic: &str, query: &str, body: Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "{endpoint}/v1.0/publish/todo-pubsub/{topic}{query}"
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().await.unwrap());
}

fn pending(server: &RedisServer, topic: &str, group: &str) -> usize {
    let reply: StreamPendingReply = server.con().xpending(topic, group).unwrap();
    reply.count()
}

/// Polls until `group` has no pending entries on `topic` (5 s deadline).
async fn wait_no_pending(server: &RedisServer, topic: &str, group: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pending(server, topic, group) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "entries still pending for {group}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_writes_data_and_metadata_fields() {
    let server = RedisServer::start();
    let (cluster, _dir) = support_redis::cluster(&server, &[]).await;
    let sc = cluster.sidecar("task-api").start().await.unwrap();
    publish(
        &sc.http_endpoint(),
        "task-created",
        "?metadata.partitionKey=t1",
        json!({"id": 1}),
    )
    .await;

    let range: StreamRangeReply = server.con().xrange_all("task-created").unwrap();
    assert_eq!(range.ids.len(), 1);
    let entry = &range.ids[0];
    let mut fields: Vec<&str> = entry.map.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["data", "metadata"]);
    let data: Value = serde_json::from_str(&entry.get::<String>("data").unwrap()).unwrap();
    assert_eq!(data["data"], json!({"id": 1}));
    assert_eq!(data["specversion"], "1.0");
    assert_eq!(data["source"], "task-api");
    let metadata: BTreeMap<String, String> =
        serde_json::from_str(&entry.get::<String>("metadata").unwrap()).unwrap();
    assert_eq!(metadata.get("partitionKey").map(String::as_str), Some("t1"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_written_like_daprd_are_delivered_and_acked() {
    let server = RedisServer::start();
    let (cluster, _dir) = support_redis::cluster(&server, &[]).await;
    let app = App::ok(&["task-created"]).await;
    cluster
        .sidecar("email-worker")
        .app_port(app.port)
        .start()
        .await
        .unwrap();

    let event = json!({"specversion": "1.0", "id": "evt-1", "source": "task-api", "type": "com.dapr.event.sent",
        "datacontenttype": "application/json", "topic": "task-created", "pubsubname": "todo-pubsub", "data": {"id": 7}});
    let _: String = server
        .con()
        .xadd(
            "task-created",
            "*",
            &[("data", event.to_string()), ("metadata", "{}".to_string())],
        )
        .unwrap();
    let got = app.wait_for(1).await;
    assert_eq!(got[0].path, "/events/task-created");
    assert_eq!(got[0].json()["id"], "evt-1");
    assert_eq!(got[0].data(), json!({"id": 7}));
    wait_no_pending(&server, "task-created", "email-worker").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_fan_out_and_members_of_a_group_compete() {
    let server = RedisServer::start();
    let (cluster, _dir) = support_redis::cluster(&server, &[]).await;
    // Two replicas of email-worker share a group; audit-logger has its own.
    let worker_a = App::ok(&["task-created"]).await;
    let worker_b = App::ok(&["task-created"]).await;
    let audit = App::ok(&["task-created"]).await;
    cluster
        .sidecar("email-worker")
        .app_port(worker_a.port)
        .start()
        .await
        .unwrap();
    cluster
        .sidecar("email-worker")
        .app_port(worker_b.port)
        .start()
        .await
        .unwrap();
    cluster
        .sidecar("audit-logger")
        .app_port(audit.port)
        .start()
        .await
        .unwrap();
    let publisher = cluster.sidecar("task-api").start().await.unwrap();

    let n = 30;
    for i in 0..n {
        publish(
            &publisher.http_endpoint(),
            "task-created",
            "",
            json!({"n": i}),
        )
        .await;
    }
    let audit_got = audit.wait_for(n).await;
    let audit_ns: HashSet<i64> = audit_got
        .iter()
        .map(|d| d.data()["n"].as_i64().unwrap())
        .collect();
    assert_eq!(audit_ns.len(), n, "audit-logger gets every event once");

    // The two replicas together see each event exactly once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while worker_a.deliveries().len() + worker_b.deliveries().len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replicas did not receive all events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen: Vec<i64> = worker_a
        .deliveries()
        .iter()
        .chain(worker_b.deliveries().iter())
        .map(|d| d.data()["n"].as_i64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        (0..n as i64).collect::<Vec<_>>(),
        "no duplicates inside one group"
    );

    let groups: redis::streams::StreamInfoGroupsReply =
        server.con().xinfo_groups("task-created").unwrap();
    let mut names: Vec<String> = groups.groups.iter().map(|g| g.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["audit-logger", "email-worker"]);
    wait_no_pending(&server, "task-created", "email-worker").await;
    wait_no_pending(&server, "task-created", "audit-logger").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_entries_stay_pending_and_are_redelivered_after_processing_timeout() {
    let server = RedisServer::start();
    let (cluster, _dir) = support_redis::cluster(&server, FAST).await;
    // First delivery fails with 500, later ones succeed.
    let app = App::start(
        &["task-updated"],
        Arc::new(|i, _| if i == 0 { 500 } else { 200 }),
    )
    .await;
    cluster
        .sidecar("email-worker")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    let publisher = cluster.sidecar("task-api").start().await.unwrap();
    publish(
        &publisher.http_endpoint(),
        "task-updated",
        "",
        json!({"id": 3}),
    )
    .await;

    let first = app.wait_for(1).await;
    // Not acked: the entry is pending for the group until it is redelivered.
    assert_eq!(pending(&server, "task-updated", "email-worker"), 1);
    let both = app.wait_for(2).await;
    assert_eq!(
        both[0].json()["id"],
        both[1].json()["id"],
        "same event redelivered"
    );
    let gap = both[1].at.duration_since(first[0].at);
    assert!(
        gap >= Duration::from_millis(250),
        "redelivered after processingTimeout, not before: {gap:?}"
    );
    wait_no_pending(&server, "task-updated", "email-worker").await;
    // Acked after success: no third delivery.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.deliveries().len(), 2);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_group_reads_the_stream_history() {
    let server = RedisServer::start();
    let (cluster, _dir) = support_redis::cluster(&server, &[]).await;
    let publisher = cluster.sidecar("task-api").start().await.unwrap();
    for i in 0..3 {
        publish(
            &publisher.http_endpoint(),
            "task-completed",
            "",
            json!({"i": i}),
        )
        .await;
    }
    // The subscriber arrives later; its group starts at id 0.
    let late = App::ok(&["task-completed"]).await;
    cluster
        .sidecar("audit-logger")
        .app_port(late.port)
        .start()
        .await
        .unwrap();
    let got = late.wait_for(3).await;
    let mut is: Vec<i64> = got
        .iter()
        .map(|d| d.data()["i"].as_i64().unwrap())
        .collect();
    is.sort();
    assert_eq!(is, [0, 1, 2]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_group_is_recreated() {
    let server = RedisServer::start();
    let (cluster, _dir) = support_redis::cluster(&server, &[]).await;
    let app = App::ok(&["task-deleted"]).await;
    cluster
        .sidecar("audit-logger")
        .app_port(app.port)
        .start()
        .await
        .unwrap();
    let publisher = cluster.sidecar("task-api").start().await.unwrap();
    let destroyed: i64 = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg("task-deleted")
        .arg("audit-logger")
        .query(&mut server.con())
        .unwrap();
    assert_eq!(destroyed, 1);
    publish(
        &publisher.http_endpoint(),
        "task-deleted",
        "",
        json!({"id": 9}),
    )
    .await;
    let got = app.wait_for(1).await;
    assert_eq!(got[0].data(), json!({"id": 9}));
    cluster.shutdown().await;
}
