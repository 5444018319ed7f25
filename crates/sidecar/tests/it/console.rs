//! The run's console, black-box: a real `sidecar run -f` with the `dapr-test-app` subscriber and
//! a sidecar-only publisher, read over real HTTP. A published event and its delivery appear in
//! `/api/events` and live on `/api/stream`; hostile text comes back as JSON data under the CSP;
//! off loopback the console wants its token; replay wants its action header; viewers that stop
//! reading neither hold up deliveries nor the event ring, and are told what they lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::multi_app::{run, workspace};
use crate::support::*;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEST_APP: &str = env!("CARGO_BIN_EXE_dapr-test-app");
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

struct Run {
    runner: Proc,
    console: String,
    poster: u16,
    _ws: tempfile::TempDir,
}

/// A run of a subscriber (`greetings` → `/inbox`) and a sidecar-only `poster`, its console on a
/// port of its own.
async fn start() -> Run {
    let ws = workspace(&["subscriber", "poster"]);
    let (console_port, poster) = (free_port(), free_port());
    let file = write_run_file(
        ws.path(),
        &format!(
            r#"version: 1
common: {{ resourcesPaths: [./resources] }}
console: {{ port: {console_port} }}
apps:
  - appID: subscriber
    appDirPath: ./apps/subscriber
    appPort: {sub}
    command: ["{TEST_APP}"]
    env: {{ ROLE: subscriber, TOPIC: greetings }}
  - appID: poster
    appDirPath: ./apps/poster
    daprHTTPPort: {poster}
"#,
            sub = free_port()
        ),
    );
    let runner = run(&file);
    let console = format!("http://127.0.0.1:{console_port}");
    let out = runner
        .stdout
        .wait_for(&format!("Console: {console}/"))
        .await;
    assert!(
        out.contains("DAPR HTTP PORT"),
        "URL next to the table\n{out}"
    );
    // Deliveries start once the subscriber's sidecar has its subscription.
    eventually("the subscription in /api/apps", || {
        let url = format!("{console}/api/apps");
        async move {
            let apps: Value = http().get(url).send().await.ok()?.json().await.ok()?;
            let sub = apps
                .as_array()?
                .iter()
                .find(|a| a["app_id"] == "subscriber")?;
            (sub["subscriptions"][0]["topic"] == "greetings").then_some(())
        }
    })
    .await;
    Run {
        runner,
        console,
        poster,
        _ws: ws,
    }
}

async fn publish(poster: u16, body: &Value) {
    let r = http()
        .post(format!(
            "http://127.0.0.1:{poster}/v1.0/publish/todo-pubsub/greetings"
        ))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

async fn stop(mut run: Run) {
    run.runner.signal(Signal::SIGINT);
    let status = run.runner.wait_exit().await;
    assert!(status.success(), "{status:?}\n{}", run.runner.stderr.text());
}

#[tokio::test]
async fn a_published_event_and_its_delivery_appear_in_the_ring_and_on_the_stream() {
    let run = start().await;
    let mut stream = http()
        .get(format!("{}/api/stream", run.console))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    assert_eq!(
        stream.headers()["content-security-policy"],
        "default-src 'self'; frame-src 'self'; img-src 'self' data:"
    );
    publish(
        run.poster,
        &json!({"n": 7, "task_id": "t-hostile", "title": HOSTILE}),
    )
    .await;

    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(seen.contains("event: published") && seen.contains("\"outcome\":\"SUCCESS\"")) {
        assert!(Instant::now() < deadline, "stream so far:\n{seen}");
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: delivery"), "{seen}");
    assert!(seen.contains("\"subscriber\":\"subscriber\""), "{seen}");

    let response = http()
        .get(format!("{}/api/events?task_id=t-hostile", run.console))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let events: Value = response.json().await.unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["topic"], "greetings");
    assert_eq!(event["publisher"], "poster");
    assert_eq!(
        event["cloudevent"]["data"]["title"], HOSTILE,
        "text is data"
    );
    let delivery = &event["deliveries"][0];
    assert_eq!(delivery["subscriber"], "subscriber");
    assert_eq!(delivery["instance"], "subscriber");
    assert_eq!(delivery["route"], "/inbox");
    assert_eq!(delivery["outcome"], "SUCCESS");
    assert_eq!(delivery["status"], 200);
    assert_eq!(delivery["attempt"], 1);
    assert_eq!(delivery["dead_lettered"], false);
    run.runner
        .stdout
        .wait_for("== APP - subscriber == received n=7")
        .await;

    let logs: Value = http()
        .get(format!("{}/api/logs?app=subscriber", run.console))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        logs.as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"].as_str().unwrap().starts_with("started pid=")),
        "{logs}"
    );

    let replay = format!("{}/api/dead-letters/some-event/replay", run.console);
    let refused = http().post(&replay).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 403, "replay without its header");
    let allowed = http()
        .post(&replay)
        .header("X-Console-Action", "replay")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.status().as_u16(),
        503,
        "no audit-logger in this run"
    );
    stop(run).await;
}

#[tokio::test]
async fn off_loopback_the_console_needs_its_token() {
    let ws = workspace(&["solo"]);
    let file = write_run_file(
        ws.path(),
        "version: 1\ncommon: { resourcesPaths: [./resources] }\napps:\n  - appID: solo\n    appDirPath: ./apps/solo\n",
    );
    let port = free_port();
    let args = |file: &Path| -> Vec<String> {
        [
            "run",
            "-f",
            &file.display().to_string(),
            "--console-address",
            "0.0.0.0",
            "--console-port",
            &port.to_string(),
        ]
        .map(String::from)
        .to_vec()
    };
    let mut refused = Proc::spawn(&args(&file), &[]);
    let status = refused.wait_exit().await;
    assert!(!status.success());
    let err = refused.stderr.wait_for("token").await;
    assert!(err.contains("SIDECAR_CONSOLE_TOKEN"), "{err}");

    let mut runner = Proc::spawn(&args(&file), &[("SIDECAR_CONSOLE_TOKEN", "tok-3f9a")]);
    let out = runner
        .stdout
        .wait_for(&format!("Console: http://127.0.0.1:{port}/"))
        .await;
    assert!(
        !out.contains("tok-3f9a"),
        "the token is never printed\n{out}"
    );
    let url = format!("http://127.0.0.1:{port}/api/apps");
    assert_eq!(
        http().get(&url).send().await.unwrap().status().as_u16(),
        401
    );
    let wrong = http()
        .get(&url)
        .bearer_auth("tok-0000")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let ok = http()
        .get(&url)
        .bearer_auth("tok-3f9a")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let page = http()
        .get(format!("http://127.0.0.1:{port}/?token=tok-3f9a"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    runner.signal(Signal::SIGINT);
    assert!(runner.wait_exit().await.success());
    assert!(!runner.stderr.text().contains("tok-3f9a"));
}

#[tokio::test]
async fn viewers_that_stop_reading_hold_up_neither_deliveries_nor_the_ring() {
    let run = start().await;
    let port: u16 = run.console.rsplit(':').next().unwrap().parse().unwrap();
    // Two viewers that open the stream and then read nothing.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        socket
            .write_all(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        stalled.push(socket);
    }
    // Large events fill the stalled viewers' socket buffers, then their stream backlogs.
    let padding = "x".repeat(32 * 1024);
    let total = 1200u64;
    let publishers = (0..8u64).map(|p| {
        let padding = padding.clone();
        let poster = run.poster;
        async move {
            for n in (p..total).step_by(8) {
                publish(poster, &json!({"n": n, "pad": padding})).await;
            }
        }
    });
    futures::future::join_all(publishers).await;
    let delivered = eventually("every event delivered and filed", || {
        let url = format!("{}/api/events?topic=greetings&limit=2000", run.console);
        async move {
            let events: Value = http().get(url).send().await.ok()?.json().await.ok()?;
            let events = events.as_array()?;
            let done = events
                .iter()
                .filter(|e| {
                    e["deliveries"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|d| d["outcome"] == "SUCCESS"))
                })
                .count();
            (done as u64 == total).then_some(done)
        }
    })
    .await;
    assert_eq!(delivered as u64, total);

    // The stalled viewers were kept connected, and learn how much they lost once they read.
    let mut socket = stalled.pop().unwrap();
    let mut text = String::new();
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text.contains("event: lagged") {
        assert!(
            Instant::now() < deadline,
            "no lagged event; read {} bytes",
            text.len()
        );
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the console closed the stalled viewer");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let lagged = text.split("event: lagged\ndata: ").nth(1).unwrap();
    let dropped: Value = serde_json::from_str(lagged.lines().next().unwrap()).unwrap();
    assert!(dropped["dropped"].as_u64().unwrap() > 0, "{dropped}");
    drop(stalled);
    stop(run).await;
}
