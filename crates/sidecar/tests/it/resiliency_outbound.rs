//! Outbound resiliency against the real `sidecar` binary: publish retries and breaker when the
//! broker itself fails (a real `redis-server` refusing writes), and service invocation retries
//! and breakers per target app and method, applied by the calling sidecar.

use crate::multi_app::{healthz, run, workspace};
use crate::support::*;
use crate::support_redis::{RedisServer, write_components};
use axum::http::StatusCode;
use serde_json::json;
use std::time::Duration;

/// Makes Redis refuse every write (`OOM command not allowed`), or accept them again.
fn refuse_writes(server: &RedisServer, refuse: bool) {
    let mut con = server.con();
    let limit = if refuse { "1" } else { "0" };
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(limit)
        .query(&mut con)
        .unwrap();
}

/// Writes Redis refused for lack of memory so far (`INFO errorstats`).
fn oom_errors(server: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("errorstats")
        .query(&mut server.con())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("errorstat_OOM:count="))
        .and_then(|n| n.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn publishes_are_retried_and_a_failing_broker_opens_the_publish_breaker() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    write_components(dir.path(), &server, &[]);
    std::fs::write(
        dir.path().join("resiliency.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: publish\nspec:\n  policies:\n    retries:\n      r: { policy: constant, duration: 300ms, maxRetries: 2 }\n    circuitBreakers:\n      cb: { timeout: 1s, trip: \"consecutiveFailures >= 3\" }\n  targets:\n    components:\n      todo-pubsub: { outbound: { retry: r, circuitBreaker: cb } }\n",
    )
    .unwrap();
    let sidecar = Sidecar::start(SidecarSpec {
        app_id: "publisher".into(),
        resources: vec![dir.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    let publish = || sidecar.publish(PUBSUB, "events", "", Some("application/json"), "{}");
    let stream_len = || -> usize {
        redis::cmd("XLEN")
            .arg("events")
            .query(&mut server.con())
            .unwrap()
    };

    // A broker that recovers while the policy retries: the publish succeeds.
    refuse_writes(&server, true);
    let pending = tokio::spawn({
        let url = sidecar.url(&format!("/v1.0/publish/{PUBSUB}/events"));
        async move {
            http()
                .post(url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // Let the first attempt fail before the broker recovers.
    eventually("the first publish attempt refused", || async {
        (oom_errors(&server) >= 1).then_some(())
    })
    .await;
    refuse_writes(&server, false);
    assert_eq!(
        pending.await.unwrap(),
        204,
        "the retry after the broker recovered succeeded"
    );
    assert_eq!(stream_len(), 1);

    // A broker that keeps failing: three attempts, the third failure opens the breaker.
    refuse_writes(&server, true);
    let body = assert_error(publish().await, 500, "ERR_PUBSUB_PUBLISH_MESSAGE").await;
    assert!(
        !body["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker"),
        "the broker's own error: {body}"
    );
    let started = std::time::Instant::now();
    let body = assert_error(publish().await, 500, "ERR_PUBSUB_PUBLISH_MESSAGE").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker is open"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "an open breaker fails at once"
    );

    refuse_writes(&server, false);
    eventually("publish accepted once the breaker half-opens", || async {
        (publish().await.status() == 204).then_some(())
    })
    .await;
    assert_eq!(stream_len(), 2);
}

#[tokio::test]
async fn invocations_are_retried_by_the_caller_with_one_breaker_per_app_and_method() {
    let ws = workspace(&["a", "b"]);
    std::fs::write(
        ws.path().join("resources/resiliency.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: apps\nspec:\n  policies:\n    retries:\n      r: { policy: constant, duration: 10ms, maxRetries: 2, matching: { httpStatusCodes: \"500-599\" } }\n    circuitBreakers:\n      cb: { timeout: 1h, trip: \"consecutiveFailures >= 3\" }\n  targets:\n    apps:\n      app-b: { retry: r, circuitBreaker: cb }\n",
    )
    .unwrap();
    let app_b = TestApp::start(json!([])).await;
    app_b.respond_with(|r| match r.path.as_str() {
        "/flaky" => (StatusCode::SERVICE_UNAVAILABLE, "try later".into()),
        "/bad" => (StatusCode::BAD_REQUEST, "no".into()),
        _ => (StatusCode::OK, "fine".into()),
    });
    let (a_dapr, b_dapr) = (free_port(), free_port());
    let file = write_run_file(
        ws.path(),
        &format!(
            "version: 1\ncommon: {{ resourcesPaths: [./resources] }}\napps:\n  - {{ appID: app-a, appDirPath: apps/a, daprHTTPPort: {a_dapr} }}\n  - {{ appID: app-b, appDirPath: apps/b, daprHTTPPort: {b_dapr}, appPort: {} }}\n",
            app_b.port
        ),
    );
    let runner = run(&file);
    eventually("both sidecars up", || async {
        (healthz(a_dapr).await == Some(204) && healthz(b_dapr).await == Some(204)).then_some(())
    })
    .await;
    let invoke = |method: &str| {
        http()
            .get(format!(
                "http://127.0.0.1:{a_dapr}/v1.0/invoke/app-b/method/{method}"
            ))
            .send()
    };

    // Both sidecars report ready before the runtime may route to app-b; wait until it does.
    eventually("app-b reachable through app-a's sidecar", || async {
        (invoke("fine").await.unwrap().status() == 200).then_some(())
    })
    .await;
    let r = invoke("bad").await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, "no".to_string())
    );
    assert_eq!(
        app_b.received_on("/bad").len(),
        1,
        "a 400 outside `matching` is not retried"
    );

    let r = invoke("flaky").await.unwrap();
    assert_eq!(r.status(), 503, "the caller gets the app's last answer");
    assert_eq!(app_b.received_on("/flaky").len(), 3);
    let body = assert_error(invoke("flaky").await.unwrap(), 500, "ERR_DIRECT_INVOKE").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker is open"),
        "{body}"
    );
    assert_eq!(
        app_b.received_on("/flaky").len(),
        3,
        "the open breaker did not call the app"
    );

    let r = invoke("fine").await.unwrap();
    assert_eq!(r.status(), 200, "another method has its own breaker");
    let m = metrics(&format!("http://127.0.0.1:{a_dapr}")).await;
    assert!(
        m.contains("target=\"app_app-b:flaky\",status=\"open\"} 1"),
        "{m}"
    );
    drop(runner);
}
