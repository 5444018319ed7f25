//! The real binary is SIGKILLed between the state commit and the publish (and the projection of
//! the change into the index); on restart the outbox relay publishes the committed change's
//! event, exactly once, and projects the task into the index.
//!
//! Nothing in the binary helps: the app talks to its sidecar through the test's proxy, which
//! lets the state transaction through and holds the publish that follows it, and the test kills
//! the process while that publish is held.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use service_testing::Proxy;
use support::{Cluster, SECRET, free_port};

fn start(port: u16, dapr: &str, extra: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_task-api"))
        .env_clear()
        .envs(extra.iter().copied())
        .env("APP_PORT", port.to_string())
        .env("APP_HOST", "127.0.0.1")
        .env("DAPR_HTTP_ENDPOINT", dapr)
        .env("JWT_SECRET", SECRET)
        .env("OUTBOX_GRACE_PERIOD", "500ms")
        .env("OUTBOX_RELAY_INTERVAL", "200ms")
        // The restarted process is a new outbox writer: it drains the killed one's shards once
        // that one's lease has expired.
        .env("OUTBOX_LEASE_TTL", "1s")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_healthy(client: &reqwest::Client, base: &str, child: &mut Child) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = client.get(format!("{base}/healthz")).send().await;
        if response.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "task-api exited early");
        assert!(
            tokio::time::Instant::now() < deadline,
            "task-api never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task-api did not die"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The entries of every outbox shard.
async fn outbox_entries(cluster: &Cluster) -> Vec<Value> {
    let mut entries = Vec::new();
    for key in cluster.state_keys("task-api").await {
        if key.starts_with("outbox:") {
            let shard = cluster.state_of("task-api", &key).await.unwrap();
            entries.extend(shard["entries"].as_array().cloned().unwrap_or_default());
        }
    }
    entries
}

#[tokio::test]
async fn a_crash_between_commit_and_publish_loses_no_event() {
    let cluster = Cluster::in_memory().await.unwrap();
    let port = free_port();
    let sidecar = cluster
        .sidecar("task-api")
        .app_port(Some(port))
        .start()
        .await
        .unwrap();
    let proxy = Proxy::start(sidecar.http_endpoint()).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let settings = support::settings(&[]);
    let user = uuid::Uuid::new_v4();
    let token = task_api::auth::issue_token(
        &settings,
        user,
        "crash@example.com",
        Duration::from_secs(600),
    )
    .unwrap();

    proxy.hold_publishes();
    // The first process projects nothing into the index before it dies.
    let mut first = start(port, &proxy.url, &[("INDEX_PROJECTION_INTERVAL", "1h")]);
    wait_healthy(&client, &base, &mut first).await;
    let request = tokio::spawn(
        client
            .post(format!("{base}/api/tasks"))
            .bearer_auth(&token)
            .json(&json!({"title": "survives a crash"}))
            .send(),
    );
    let held = proxy.wait_for_held_publish(Duration::from_secs(20)).await;
    assert!(
        held.starts_with("POST /v1.0/publish/todo-pubsub/task-created"),
        "{held}"
    );
    let transactions = proxy
        .requests()
        .into_iter()
        .filter(|r| r.ends_with("/transaction"))
        .count();
    assert_eq!(transactions, 1, "{:?}", proxy.requests());

    // The app sent the publish after its transaction: the change is committed with its event
    // recorded, and nothing was published.
    let keys = cluster.state_keys("task-api").await;
    let task_keys: Vec<&String> = keys.iter().filter(|k| k.starts_with("task:")).collect();
    assert_eq!(task_keys.len(), 1, "{keys:?}");
    let task_id = task_keys[0].trim_start_matches("task:").to_owned();
    let recorded = outbox_entries(&cluster).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["task_id"], task_id.as_str());

    let heads = |keys: Vec<String>| {
        keys.into_iter()
            .filter(|k| k.starts_with(&format!("user:{user}:tasks:")))
            .count()
    };
    assert_eq!(
        heads(cluster.state_keys("task-api").await),
        0,
        "the index is not written on the request path"
    );
    first.kill().unwrap();
    let status = wait_exit(&mut first).await;
    assert_eq!(status.signal(), Some(9), "SIGKILLed: {status:?}");
    let response = request.await.unwrap();
    assert!(response.is_err(), "the process died before answering");
    assert!(cluster.published("task-created").is_empty());

    // The held publish is answered without ever reaching the sidecar.
    proxy.release_publishes();
    let mut second = start(port, &proxy.url, &[]);
    wait_healthy(&client, &base, &mut second).await;
    let events = cluster
        .wait_for_published("task-created", 1, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        events[0]["data"]["data"]["task"]["task_id"],
        task_id.as_str()
    );
    assert_eq!(events[0]["data"]["data"]["task"]["version"], 1);
    assert_eq!(events[0]["id"], events[0]["data"]["event_id"]);
    assert_eq!(events[0]["id"], recorded[0]["event_id"]);

    // Wait until the relay removed the entry, then check nothing else went out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !outbox_entries(&cluster).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox never drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        cluster.published("task-created").len(),
        1,
        "exactly one event"
    );

    // The drain projected the task into the index before deleting its entry: it is listed.
    let listed: Value = client
        .get(format!("{base}/api/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [task_id.as_str()], "the index has the task");
    assert_eq!(heads(cluster.state_keys("task-api").await), 1);

    // The restarted service serves the task normally.
    let got = client
        .get(format!("{base}/api/tasks/{task_id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);

    second.kill().unwrap();
    let _ = second.wait();
    sidecar.shutdown().await;
    cluster.shutdown().await;
}
