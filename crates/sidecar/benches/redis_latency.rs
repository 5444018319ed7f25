//! Redis-backed and Kafka-backed components beside the in-memory ones, over real HTTP on
//! loopback:
//! * publish -> delivery: p50/p99 latency of one event at a time, then a burst with 16
//!   concurrent publishers (throughput and latency under load);
//! * state: save and get round trips (p50/p99), then 16 concurrent clients (ops/s).
//!
//! Starts its own `redis-server` on a free port, with the helper of this crate's tests (which is
//! why the benchmark lives here rather than beside the in-memory one in `sidecar-core`), and a
//! tansu broker (`sidecar_testing::KafkaBroker`, topic `bench` with 3 partitions). Run with
//! `cargo bench -p sidecar --bench redis_latency` (env `BENCH_N` scales the event count).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/it/support_redis/server.rs"]
mod server;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::json;
use sidecar_testing::{Cluster, KafkaBroker};
use std::sync::Arc;
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

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut d: Vec<Duration>) -> String {
    d.sort();
    format!(
        "p50 {:>7.3} ms  p99 {:>7.3} ms",
        pct(&d, 0.5).as_secs_f64() * 1e3,
        pct(&d, 0.99).as_secs_f64() * 1e3
    )
}

async fn redis_cluster(server: &server::RedisServer) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let addr = server.addr();
    std::fs::write(
        dir.path().join("c.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-state\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: {addr}\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-pubsub\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: {addr}\n"
        ),
    )
    .unwrap();
    (Cluster::from_resources(&[dir.path()]).await.unwrap(), dir)
}

/// `todo-pubsub` on a Kafka broker (a new group starts at the oldest record, so nothing published
/// while the subscriber joins is missed), state in memory.
async fn kafka_cluster(broker: &KafkaBroker) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let brokers = broker.brokers();
    std::fs::write(
        dir.path().join("c.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-state\nspec:\n  type: state.in-memory\n  version: v1\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-pubsub\nspec:\n  type: pubsub.kafka\n  version: v1\n  metadata:\n  - name: brokers\n    value: \"{brokers}\"\n  - name: authType\n    value: none\n  - name: initialOffset\n    value: oldest\n"
        ),
    )
    .unwrap();
    (Cluster::from_resources(&[dir.path()]).await.unwrap(), dir)
}

async fn pubsub(label: &str, cluster: &Cluster, n: u64) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let port = subscriber(tx).await;
    cluster.sidecar("sub").app_port(port).start().await.unwrap();
    let publisher = cluster.sidecar("pub").start().await.unwrap();
    let url = format!(
        "{}/v1.0/publish/todo-pubsub/bench",
        publisher.http_endpoint()
    );
    let client = reqwest::Client::new();

    // One at a time: publish, wait for the delivery.
    let mut latencies = Vec::new();
    for seq in 0..n.min(1000) {
        let t0 = Instant::now();
        let r = client
            .post(&url)
            .json(&json!({"seq": seq}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        let (got, at) = rx.recv().await.unwrap();
        assert_eq!(got, seq);
        latencies.push(at - t0);
    }
    println!(
        "{label:<10} publish->delivery, one at a time   {}",
        summary(latencies)
    );

    // Burst: n events from 16 concurrent publishers.
    let starts = Arc::new(
        (0..n)
            .map(|_| std::sync::OnceLock::new())
            .collect::<Vec<_>>(),
    );
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let (client, url, starts) = (client.clone(), url.clone(), starts.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = 1_000_000 + w;
            while seq < 1_000_000 + n {
                let _ = starts[(seq - 1_000_000) as usize].set(Instant::now());
                let r = client
                    .post(&url)
                    .json(&json!({"seq": seq}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 204);
                seq += 16;
            }
        }));
    }
    let mut latencies = Vec::with_capacity(n as usize);
    while (latencies.len() as u64) < n {
        let (seq, at) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("deliveries stalled")
            .unwrap();
        let start = starts[(seq - 1_000_000) as usize].get().copied().unwrap();
        latencies.push(at - start);
    }
    let elapsed = t0.elapsed();
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "{label:<10} burst of {n} (16 publishers)       {}  {:>8.0} events/s",
        summary(latencies),
        n as f64 / elapsed.as_secs_f64()
    );
}

async fn state(label: &str, cluster: &Cluster, n: u64) {
    let sc = cluster.sidecar("state-bench").start().await.unwrap();
    let base = format!("{}/v1.0/state/todo-state", sc.http_endpoint());
    let client = reqwest::Client::new();
    let (mut saves, mut gets) = (Vec::new(), Vec::new());
    for i in 0..n.min(2000) {
        let t0 = Instant::now();
        let r = client
            .post(&base)
            .json(
                &json!([{"key": format!("k{}", i % 100), "value": {"i": i, "title": "benchmark"}}]),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        saves.push(t0.elapsed());
        let t1 = Instant::now();
        let r = client
            .get(format!("{base}/k{}", i % 100))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.bytes().await.unwrap();
        gets.push(t1.elapsed());
    }
    println!(
        "{label:<10} state save                         {}",
        summary(saves)
    );
    println!(
        "{label:<10} state get                          {}",
        summary(gets)
    );

    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..n / 16 {
                let key = format!("w{w}-{}", i % 50);
                let r = client
                    .post(&base)
                    .json(&json!([{"key": key, "value": i}]))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 204);
                let r = client.get(format!("{base}/{key}")).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ops = 2 * (n / 16) * 16;
    println!(
        "{label:<10} state save+get, 16 clients        {:>8.0} ops/s",
        ops as f64 / t0.elapsed().as_secs_f64()
    );
}

fn main() {
    let n: u64 = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let memory = Cluster::in_memory().await.unwrap();
        pubsub("in-memory", &memory, n).await;
        state("in-memory", &memory, n).await;
        memory.shutdown().await;

        let redis = server::RedisServer::start();
        let (cluster, _dir) = redis_cluster(&redis).await;
        pubsub("redis", &cluster, n).await;
        state("redis", &cluster, n).await;
        cluster.shutdown().await;

        let broker = KafkaBroker::start();
        broker.create_topic("bench", 3);
        let (cluster, _dir) = kafka_cluster(&broker).await;
        pubsub("kafka", &cluster, n).await;
        cluster.shutdown().await;
    });
}
