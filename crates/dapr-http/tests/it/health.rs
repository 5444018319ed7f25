//! Sidecar availability: waiting for outbound health, and bounded failure when it is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::{Duration, Instant};

use dapr_http::{DaprClient, DaprError, DaprSettings};
use support::{FakeSidecar, STORE};
use tokio::net::TcpListener;

/// Slack for scheduling on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(700);

fn client(endpoint: &str, request_timeout: Duration) -> DaprClient {
    DaprClient::new(
        DaprSettings::with_endpoint(endpoint)
            .request_timeout(request_timeout)
            .connect_timeout(request_timeout),
    )
    .unwrap()
}

#[tokio::test]
async fn stopped_sidecar_is_unavailable_within_the_timeout() {
    let sidecar = FakeSidecar::start().await;
    let endpoint = sidecar.endpoint.clone();
    sidecar.stop().await;
    let timeout = Duration::from_millis(500);
    let client = client(&endpoint, timeout);

    let started = Instant::now();
    let err = client.get_state::<i32>(STORE, "k").await.unwrap_err();
    assert!(
        matches!(&err, DaprError::SidecarUnavailable { endpoint: e, .. } if *e == endpoint),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(
        started.elapsed() < timeout + MARGIN,
        "{:?}",
        started.elapsed()
    );
    assert!(!client.is_ready().await);
}

#[tokio::test]
async fn unresponsive_sidecar_times_out_as_unavailable() {
    // The kernel accepts connections into the backlog but nothing ever answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let timeout = Duration::from_millis(400);
    let client = client(&endpoint, timeout);

    let started = Instant::now();
    let err = client.get_state::<i32>(STORE, "k").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&err, DaprError::SidecarUnavailable { reason, .. } if reason == "timed out"),
        "{err:?}"
    );
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < timeout + MARGIN, "{elapsed:?}");
    drop(listener);
}

#[tokio::test]
async fn wait_for_sidecar_times_out_on_a_dead_endpoint() {
    let endpoint = support::dead_endpoint().await;
    let client = client(&endpoint, Duration::from_secs(5));
    let deadline = Duration::from_millis(400);
    let started = Instant::now();
    let err = client.wait_for_sidecar(deadline).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, DaprError::SidecarUnavailable { .. }),
        "{err:?}"
    );
    assert!(elapsed >= deadline, "{elapsed:?}");
    assert!(elapsed < deadline + MARGIN, "{elapsed:?}");
}

#[tokio::test]
async fn wait_for_sidecar_polls_outbound_health_until_it_turns_healthy() {
    let sidecar = FakeSidecar::start().await;
    sidecar.set_outbound_healthy(false);
    let client = client(&sidecar.endpoint, Duration::from_secs(2));
    assert!(!client.is_ready().await);

    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.wait_for_sidecar(Duration::from_secs(10)).await }
    });
    // Turn healthy only after the waiter has seen at least two unhealthy answers.
    let seen = sidecar.wait_for_requests(3, Duration::from_secs(5)).await;
    assert!(seen.len() >= 3);
    assert!(!waiting.is_finished());
    sidecar.set_outbound_healthy(true);
    waiting.await.unwrap().unwrap();
    assert!(client.is_ready().await);

    // Only the outbound probe is used: /v1.0/healthz stays 500 until the app listens.
    let paths: Vec<String> = sidecar.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths.iter().all(|p| p == "/v1.0/healthz/outbound"),
        "{paths:?}"
    );
}

#[tokio::test]
async fn wait_for_sidecar_succeeds_once_the_sidecar_comes_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client(&format!("http://{addr}"), Duration::from_secs(2));
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.wait_for_sidecar(Duration::from_secs(10)).await }
    });
    assert!(!waiting.is_finished());
    let listener = TcpListener::bind(addr).await.unwrap();
    let sidecar = FakeSidecar::serve(listener, None).await;
    waiting.await.unwrap().unwrap();
    assert!(!sidecar.requests_to("/v1.0/healthz/outbound").is_empty());
}

#[tokio::test]
async fn health_probes_need_no_api_token() {
    let sidecar = FakeSidecar::start_with(Some("secret")).await;
    let client = client(&sidecar.endpoint, Duration::from_secs(2));
    client
        .wait_for_sidecar(Duration::from_secs(2))
        .await
        .unwrap();
    let err = client.get_state::<i32>(STORE, "k").await.unwrap_err();
    assert!(matches!(err, DaprError::Unauthorized { .. }), "{err:?}");
}
