//! Sidecar benchmarks over real HTTP on loopback (in-memory components):
//! * publish -> delivery for one subscriber: throughput and p50/p99 end-to-end latency;
//! * state save + get round trips per second.
//!
//! Run with `cargo bench -p sidecar-core`. The custom measurements print their numbers first;
//! criterion then measures single publish and single save+get round trips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use criterion::Criterion;
use serde_json::json;
use sidecar_testing::Cluster;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Seen = mpsc::UnboundedSender<(u64, Instant)>;

async fn subscriber(tx: Seen) -> u16 {
    let router = Router::new()
        .route(
            "/dapr/subscribe",
            axum::routing::get(|| async {
                axum::Json(json!([{"pubsubname":"todo-pubsub","topic":"bench","route":"/bench"}]))
            }),
        )
        .route(
            "/bench",
            axum::routing::post(|State(tx): State<Seen>, body: Bytes| async move {
                let ce: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let _ = tx.send((ce["data"]["seq"].as_u64().unwrap(), Instant::now()));
                ""
            }),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    port
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Publishes `n` events with `parallel` concurrent publishers and waits for every delivery.
async fn publish_to_delivery(n: u64, parallel: u64) {
    let cluster = Cluster::in_memory().await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let port = subscriber(tx).await;
    cluster.sidecar("sub").app_port(port).start().await.unwrap();
    let publisher = cluster.sidecar("pub").start().await.unwrap();
    let url = format!(
        "{}/v1.0/publish/todo-pubsub/bench",
        publisher.http_endpoint()
    );
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let client = reqwest::Client::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..parallel {
        let (client, url, sent) = (client.clone(), url.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = w;
            while seq < n {
                sent.lock().unwrap().insert(seq, Instant::now());
                let r = client
                    .post(&url)
                    .json(&json!({"seq": seq}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 204);
                seq += parallel;
            }
        }));
    }
    let mut latencies = Vec::with_capacity(n as usize);
    let mut received = Vec::with_capacity(n as usize);
    while received.len() < n as usize {
        let (seq, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("deliveries stalled")
            .unwrap();
        received.push((seq, at));
    }
    let elapsed = start.elapsed();
    for t in tasks {
        t.await.unwrap();
    }
    {
        let sent = sent.lock().unwrap();
        for (seq, at) in received {
            latencies.push(at.duration_since(sent[&seq]));
        }
    }
    latencies.sort();
    println!(
        "publish->delivery, 1 subscriber, {n} events, {parallel} publishers: {:.0} events/s, latency p50 {:.2} ms, p99 {:.2} ms",
        n as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    cluster.shutdown().await;
}

async fn state_round_trips(n: u64) {
    let cluster = Cluster::in_memory().await.unwrap();
    let sc = cluster.sidecar("state").start().await.unwrap();
    let base = format!("{}/v1.0/state/todo-state", sc.http_endpoint());
    let client = reqwest::Client::new();
    let mut rtts = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        let key = format!("k{}", i % 100);
        let r = client
            .post(&base)
            .json(&json!([{"key": key, "value": {"i": i}}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = client.get(format!("{base}/{key}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        rtts.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    rtts.sort();
    println!(
        "state save+get, sequential, {n} pairs: {:.0} pairs/s ({:.0} requests/s), pair p50 {:.2} ms, p99 {:.2} ms",
        n as f64 / elapsed.as_secs_f64(),
        2.0 * n as f64 / elapsed.as_secs_f64(),
        percentile(&rtts, 0.50).as_secs_f64() * 1e3,
        percentile(&rtts, 0.99).as_secs_f64() * 1e3,
    );
    cluster.shutdown().await;
}

fn criterion_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let (cluster, endpoint) = rt.block_on(async {
        let cluster = Cluster::in_memory().await.unwrap();
        let sc = cluster.sidecar("crit").start().await.unwrap();
        (cluster, sc.http_endpoint())
    });
    let client = reqwest::Client::new();
    let publish_url = format!("{endpoint}/v1.0/publish/todo-pubsub/unsubscribed");
    c.bench_function("publish (no subscriber)", |b| {
        b.to_async(rt).iter(|| async {
            let r = client
                .post(&publish_url)
                .json(&json!({"a": 1}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        })
    });
    let state_url = format!("{endpoint}/v1.0/state/todo-state");
    c.bench_function("state save + get", |b| {
        b.to_async(rt).iter(|| async {
            let r = client
                .post(&state_url)
                .json(&json!([{"key": "k", "value": {"x": 1}}]))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
            let r = client.get(format!("{state_url}/k")).send().await.unwrap();
            r.bytes().await.unwrap();
        })
    });
    rt.block_on(cluster.shutdown());
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        publish_to_delivery(2_000, 1).await;
        publish_to_delivery(10_000, 16).await;
        state_round_trips(5_000).await;
    });
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    criterion_benches(&mut c, &rt);
    c.final_summary();
}
