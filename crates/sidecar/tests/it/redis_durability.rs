//! Durability across a crash of the sidecar process: `kill -9` while events are pending, then a
//! new sidecar process for the same app picks up where the old one stopped, because everything
//! lives in Redis (state hashes, streams, consumer groups and their pending lists).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_redis;

use redis::Commands;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support_redis::RedisServer;
use support_redis::app::App;

struct Sidecar {
    child: Child,
    endpoint: String,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use sidecar_testing::free_port;

/// Starts the sidecar binary for `email-worker` and waits until its API answers.
async fn start_sidecar(resources: &std::path::Path, app_port: u16) -> Sidecar {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_sidecar"))
        .args(["--app-id", "email-worker"])
        .args(["--app-port", &app_port.to_string()])
        .args(["--dapr-http-port", &port.to_string()])
        .arg("--resources-path")
        .arg(resources)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sidecar = Sidecar {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let url = format!("{}/v1.0/healthz/outbound", sidecar.endpoint);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
        {
            return sidecar;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sidecar did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pending(server: &RedisServer) -> usize {
    let reply: redis::streams::StreamPendingReply = server
        .con()
        .xpending("task-created", "email-worker")
        .unwrap();
    reply.count()
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_neither_state_nor_pending_events() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    support_redis::write_components(
        dir.path(),
        &server,
        &[("processingTimeout", "500"), ("redeliverInterval", "100")],
    );
    // The app fails every delivery until `healthy` is set.
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let app = App::start(
        &["task-created"],
        Arc::new(move |_, _| {
            if flag.load(Ordering::SeqCst) {
                200
            } else {
                500
            }
        }),
    )
    .await;

    let first = start_sidecar(dir.path(), app.port).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1.0/state/todo-state", first.endpoint))
        .json(&json!([{"key": "task:1", "value": {"title": "survives"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    for id in ["e1", "e2"] {
        let r = http
            .post(format!(
                "{}/v1.0/publish/todo-pubsub/task-created?metadata.cloudevent.id={id}",
                first.endpoint
            ))
            .json(&json!({"id": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    app.wait_for(2).await;
    until("both events pending", || pending(&server) == 2).await;

    // Crash: no graceful shutdown, nothing acknowledged.
    drop(first);
    // Another publisher adds an event while this app's sidecar is down.
    let event = json!({"specversion": "1.0", "id": "e3", "source": "task-api", "type": "com.dapr.event.sent",
        "datacontenttype": "application/json", "topic": "task-created", "pubsubname": "todo-pubsub", "data": {"id": "e3"}});
    let _: String = server
        .con()
        .xadd(
            "task-created",
            "*",
            &[("data", event.to_string()), ("metadata", "{}".into())],
        )
        .unwrap();

    healthy.store(true, Ordering::SeqCst);
    let failed_before = app.deliveries().len();
    let second = start_sidecar(dir.path(), app.port).await;
    until("every event delivered after the restart and acked", || {
        let ok: HashSet<String> = app.deliveries()[failed_before..]
            .iter()
            .map(|d| d.json()["id"].as_str().unwrap_or_default().to_string())
            .collect();
        ["e1", "e2", "e3"].iter().all(|id| ok.contains(*id)) && pending(&server) == 0
    })
    .await;

    let r = http
        .get(format!("{}/v1.0/state/todo-state/task:1", second.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["etag"], "1");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"title": "survives"})
    );
}
