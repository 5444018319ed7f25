//! Cost of resiliency policies on the hot path, over real HTTP on loopback (in-memory
//! components): publish and state save/get latency, p50 and p99 per call, without any
//! Resiliency resource and with a timeout, a retry and a circuit breaker on both components.
//!
//! Run with `cargo bench -p sidecar-core --bench resiliency`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use sidecar_testing::Cluster;
use std::time::{Duration, Instant};

const COMPONENTS: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-state\nspec:\n  type: state.in-memory\n  version: v1\n";
const POLICY: &str = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: bench\nspec:\n  policies:\n    timeouts: { t: 5s }\n    retries: { r: { policy: exponential, maxRetries: 3 } }\n    circuitBreakers: { cb: { trip: \"consecutiveFailures > 5\" } }\n  targets:\n    components:\n      todo-pubsub: { outbound: { timeout: t, retry: r, circuitBreaker: cb } }\n      todo-state: { outbound: { timeout: t, retry: r, circuitBreaker: cb } }\n";
const N: usize = 5_000;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: p50 {:.3} ms, p99 {:.3} ms ({} calls)",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len()
    );
}

async fn measure(label: &str, with_policy: bool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("components.yaml"), COMPONENTS).unwrap();
    if with_policy {
        std::fs::write(dir.path().join("resiliency.yaml"), POLICY).unwrap();
    }
    let cluster = Cluster::from_resources(&[dir.path()]).await.unwrap();
    let sc = cluster.sidecar("bench").start().await.unwrap();
    let base = sc.http_endpoint();
    let client = reqwest::Client::new();
    let (mut publish, mut save, mut get) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..N {
        let t = Instant::now();
        let r = client
            .post(format!("{base}/v1.0/publish/todo-pubsub/bench"))
            .json(&json!({"i": i}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        publish.push(t.elapsed());
        let key = format!("k{}", i % 100);
        let t = Instant::now();
        let r = client
            .post(format!("{base}/v1.0/state/todo-state"))
            .json(&json!([{"key": key, "value": i}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        save.push(t.elapsed());
        let t = Instant::now();
        let r = client
            .get(format!("{base}/v1.0/state/todo-state/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        get.push(t.elapsed());
    }
    report(&format!("publish, {label}"), publish);
    report(&format!("state save, {label}"), save);
    report(&format!("state get, {label}"), get);
    cluster.shutdown().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm-up run, so neither measured run pays for first connections.
        measure("warm-up", false).await;
        measure("no policy", false).await;
        measure("timeout + retry + breaker", true).await;
    });
}
