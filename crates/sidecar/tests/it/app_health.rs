//! App health checks (`--enable-app-health-check`): while the app's probe fails, the sidecar
//! delivers nothing to it and short-circuits invocations; it resumes after a successful probe.
//! The app's probe log is the clock: "nothing was delivered" is checked across probes the
//! sidecar made, not across a sleep.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use support::*;

const PROBE: &str = "/app-health";

/// An app whose probe answers 503 while `unhealthy` is set (answering from its very first
/// probe), and a sidecar probing it every second with the given threshold.
async fn start(app_id: &str, threshold: u32, unhealthy: &Arc<AtomicBool>) -> Pair {
    let app = TestApp::start(serde_json::json!([sub("orders", "/orders")])).await;
    let flag = unhealthy.clone();
    app.respond_with(move |r| {
        if r.path == PROBE && flag.load(Ordering::SeqCst) {
            (StatusCode::SERVICE_UNAVAILABLE, String::new())
        } else {
            (StatusCode::OK, String::new())
        }
    });
    let resources = resources_dir(&[("components.yaml", COMPONENTS)]);
    let mut extra_args: Vec<String> = [
        "--enable-app-health-check",
        "--app-health-check-path",
        PROBE,
        "--app-health-probe-interval",
        "1",
        "--app-health-probe-timeout",
        "500",
        "--app-health-threshold",
    ]
    .map(String::from)
    .to_vec();
    extra_args.push(threshold.to_string());
    let sidecar = Sidecar::start(SidecarSpec {
        app_id: app_id.into(),
        app_port: Some(app.port),
        resources: vec![resources.path().to_path_buf()],
        extra_args,
        ..SidecarSpec::default()
    })
    .await;
    sidecar.wait_ready().await;
    Pair {
        app,
        sidecar,
        resources,
    }
}

fn probes(app: &TestApp) -> usize {
    app.received_on(PROBE).len()
}

async fn invoke(sidecar: &Sidecar, app_id: &str) -> reqwest::Response {
    http()
        .post(sidecar.url(&format!("/v1.0/invoke/{app_id}/method/hello")))
        .body("hi")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_unhealthy_app_gets_no_deliveries_or_invocations_until_a_probe_succeeds() {
    let unhealthy = Arc::new(AtomicBool::new(true));
    let pair = start("health-app", 1, &unhealthy).await;
    let (app, sidecar) = (&pair.app, &pair.sidecar);
    app.wait_for(PROBE, 1).await;

    let resp = sidecar
        .publish(PUBSUB, "orders", "", Some("application/json"), r#"{"n":1}"#)
        .await;
    assert_no_content(resp).await;
    let invoked = invoke(sidecar, "health-app").await;
    let body = assert_error(invoked, 500, "ERR_DIRECT_INVOKE").await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("not in a healthy state")),
        "{body}"
    );
    // Two more failed probes: a healthy app would have had the message within milliseconds.
    let seen = probes(app);
    app.wait_for(PROBE, seen + 2).await;
    assert!(
        app.received_on("/orders").is_empty(),
        "delivered while unhealthy"
    );
    assert!(
        app.received_on("/hello").is_empty(),
        "invoked while unhealthy"
    );

    unhealthy.store(false, Ordering::SeqCst);
    let flipped_at = app.received().len();
    let delivered = app.wait_for("/orders", 1).await;
    assert_eq!(delivered[0].json()["data"]["n"], 1);
    let all = app.received();
    let first_good_probe = all[flipped_at..]
        .iter()
        .position(|r| r.path == PROBE)
        .map(|i| i + flipped_at)
        .unwrap();
    let delivery = all.iter().position(|r| r.path == "/orders").unwrap();
    assert!(
        delivery > first_good_probe,
        "the delivery came before the probe that found the app healthy"
    );
    let invoked = invoke(sidecar, "health-app").await;
    assert_eq!(invoked.status(), StatusCode::OK);
    assert_eq!(app.received_on("/hello").len(), 1);
}

#[tokio::test]
async fn a_healthy_app_is_cut_off_only_after_threshold_failed_probes_in_a_row() {
    let unhealthy = Arc::new(AtomicBool::new(false));
    let pair = start("flaky-app", 2, &unhealthy).await;
    let (app, sidecar) = (&pair.app, &pair.sidecar);
    let metadata: serde_json::Value = http()
        .get(sidecar.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["appConnectionProperties"]["health"],
        serde_json::json!({
            "healthCheckPath": PROBE,
            "healthProbeInterval": "1s",
            "healthProbeTimeout": "500ms",
            "healthThreshold": 2
        })
    );
    eventually("the app to be found healthy", || async {
        (invoke(sidecar, "flaky-app").await.status() == StatusCode::OK).then_some(())
    })
    .await;

    unhealthy.store(true, Ordering::SeqCst);
    let flipped_at = app.received().len();
    eventually("invocation to be refused", || async {
        (invoke(sidecar, "flaky-app").await.status() == StatusCode::INTERNAL_SERVER_ERROR)
            .then_some(())
    })
    .await;
    let failed_probes = app.received()[flipped_at..]
        .iter()
        .filter(|r| r.path == PROBE)
        .count();
    assert!(
        failed_probes >= 2,
        "cut off after {failed_probes} failed probe(s), threshold 2"
    );

    unhealthy.store(false, Ordering::SeqCst);
    eventually("the app to be healthy again", || async {
        (invoke(sidecar, "flaky-app").await.status() == StatusCode::OK).then_some(())
    })
    .await;
}
