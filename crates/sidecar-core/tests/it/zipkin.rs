//! Zipkin export as daprd does it when its Configuration names `spec.tracing.zipkin`: the
//! sidecar posts its spans in Zipkin's v2 JSON model to a receiver written here, which keeps
//! every span it is sent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use sidecar_core::otel::TracingOptions;
use sidecar_testing::{Cluster, STATE_STORE};

type Received = Arc<Mutex<Vec<Value>>>;

/// A Zipkin receiver on a free port: `POST /api/v2/spans` with a JSON array of spans.
async fn zipkin_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/api/v2/spans",
        post(move |Json(spans): Json<Vec<Value>>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().extend(spans);
                StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}/api/v2/spans"), received)
}

/// The span of trace `trace_id` once the receiver has it (the batch processor sends every few
/// seconds), failing after a deadline.
async fn span_of(received: &Received, trace_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = received
            .lock()
            .unwrap()
            .iter()
            .find(|span| span["traceId"] == trace_id)
            .cloned();
        if let Some(span) = found {
            return span;
        }
        assert!(
            Instant::now() < deadline,
            "no span of trace {trace_id} reached the receiver"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sampled_calls_reach_a_zipkin_receiver_in_its_v2_model_and_unsampled_ones_do_not() {
    let (url, received) = zipkin_receiver().await;
    let cluster = Cluster::in_memory().await.unwrap();
    let sidecar = cluster
        .sidecar("zipkin-app")
        .tracing(TracingOptions {
            sampling_rate: 1.0,
            otlp_traces_url: None,
            zipkin_url: Some(url),
        })
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let save = |traceparent: &'static str| {
        http.post(format!(
            "{}/v1.0/state/{STATE_STORE}",
            sidecar.http_endpoint()
        ))
        .header("traceparent", traceparent)
        .json(&json!([{"key": "k", "value": 1}]))
        .send()
    };
    // The caller did not sample this one: the sidecar follows it (parent-based sampler).
    let unsampled = save("00-11111111111111111111111111111111-2222222222222222-00")
        .await
        .unwrap();
    assert_eq!(unsampled.status(), 204);
    let passed_on = unsampled.headers()["traceparent"].to_str().unwrap();
    assert!(
        passed_on.starts_with("00-11111111111111111111111111111111-") && passed_on.ends_with("-00"),
        "{passed_on}"
    );
    let sampled = save("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .await
        .unwrap();
    assert_eq!(sampled.status(), 204);
    let own = sampled.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let failed = http
        .get(format!(
            "{}/v1.0/state/no-such-store/k",
            sidecar.http_endpoint()
        ))
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .send()
        .await
        .unwrap();
    assert!(failed.status().is_client_error(), "{}", failed.status());

    let span = span_of(&received, "4bf92f3577b34da6a3ce929d0e0e4736").await;
    assert_eq!(span["parentId"], "00f067aa0ba902b7");
    assert_eq!(
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
            span["id"].as_str().unwrap()
        ),
        own
    );
    assert_eq!(span["name"], format!("/v1.0/state/{STATE_STORE}"));
    assert_eq!(span["kind"], "CLIENT");
    assert_eq!(span["localEndpoint"]["serviceName"], "zipkin-app");
    assert!(span["timestamp"].as_u64().unwrap() > 0);
    assert!(span["duration"].as_u64().unwrap() >= 1);
    let tags = &span["tags"];
    assert_eq!(tags["dapr.api"], format!("POST /v1.0/state/{STATE_STORE}"));
    assert_eq!(tags["dapr.status_code"], "204");
    assert_eq!(tags["db.name"], STATE_STORE);
    assert!(tags.get("error").is_none(), "{span}");

    let failed = span_of(&received, "0af7651916cd43dd8448eb211c80319c").await;
    assert_eq!(failed["tags"]["otel.status_code"], "ERROR");
    assert!(
        failed["tags"]["error"]
            .as_str()
            .unwrap()
            .starts_with("Code(4"),
        "{failed}"
    );
    // Spans are sent in the order they ended, so the unsampled call's would be here by now.
    assert!(
        received
            .lock()
            .unwrap()
            .iter()
            .all(|span| span["traceId"] != "11111111111111111111111111111111"),
        "an unsampled call was exported"
    );
}
