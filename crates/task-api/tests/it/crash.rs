//! The real binary is killed between the state commit and the publish; on restart the outbox
//! relay publishes the committed change's event, exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{Cluster, SECRET, free_port};

fn start(port: u16, dapr: &str, crash: bool) -> Child {
    Command::new(env!("CARGO_BIN_EXE_task-api"))
        .env_clear()
        .env("APP_PORT", port.to_string())
        .env("APP_HOST", "127.0.0.1")
        .env("DAPR_HTTP_ENDPOINT", dapr)
        .env("JWT_SECRET", SECRET)
        .env("OUTBOX_GRACE_PERIOD", "500ms")
        .env("OUTBOX_RELAY_INTERVAL", "200ms")
        .env("RUST_LOG", "warn")
        .env(
            "TASK_API_FAULT_CRASH_AFTER_COMMIT",
            if crash { "true" } else { "false" },
        )
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
    let dapr = sidecar.http_endpoint();
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

    let mut first = start(port, &dapr, true);
    wait_healthy(&client, &base, &mut first).await;
    let response = client
        .post(format!("{base}/api/tasks"))
        .bearer_auth(&token)
        .json(&json!({"title": "survives a crash"}))
        .send()
        .await;
    assert!(response.is_err(), "the process died before answering");
    let status = wait_exit(&mut first).await;
    assert!(!status.success(), "aborted: {status:?}");

    // The change committed, its event is recorded, nothing was published.
    let keys = cluster.state_keys("task-api").await;
    let task_keys: Vec<&String> = keys.iter().filter(|k| k.starts_with("task:")).collect();
    assert_eq!(task_keys.len(), 1, "{keys:?}");
    let task_id = task_keys[0].trim_start_matches("task:").to_owned();
    assert!(cluster.published("task-created").is_empty());

    let mut second = start(port, &dapr, false);
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

    // Wait until the relay removed the entry, then check nothing else went out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut pending = 0;
        for key in cluster.state_keys("task-api").await {
            if key.starts_with("outbox:") {
                let shard = cluster.state_of("task-api", &key).await.unwrap();
                pending += shard["entries"].as_array().map_or(0, Vec::len);
            }
        }
        if pending == 0 {
            break;
        }
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
