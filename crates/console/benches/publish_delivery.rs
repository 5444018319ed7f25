//! What the console costs the run: sidecar publish -> delivery throughput and latency over real
//! HTTP on loopback (in-memory pub/sub, one publishing and one subscribing sidecar), three ways:
//! * `off`: no observer on the run's tap (the runner with `--no-console`);
//! * `on, idle`: the console's observer installed and its server up, nobody watching;
//! * `on, viewer`: the same with a viewer reading `/api/stream` as fast as it can.
//!
//! Run with `cargo bench -p console --bench publish_delivery` (release profile). Each way runs
//! on a fresh runtime; the rounds alternate so a drift of the machine spreads over all three.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use console::{AppStatus, AppsSource, Console, Settings};
use serde_json::json;
use sidecar_core::resources::ComponentSpec;
use sidecar_core::{Registry, Resources, Runtime, SidecarOptions, start_sidecar};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Seen = mpsc::UnboundedSender<(u64, Instant)>;

#[derive(Debug)]
struct NoApps;
impl AppsSource for NoApps {
    fn apps(&self) -> Vec<AppStatus> {
        Vec::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Off,
    Idle,
    Viewer,
}

async fn subscriber(tx: Seen) -> u16 {
    let router = Router::new()
        .route(
            "/dapr/subscribe",
            axum::routing::get(|| async {
                axum::Json(json!([{"pubsubname":"bench-pubsub","topic":"bench","route":"/bench"}]))
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

struct Result {
    events_per_s: f64,
    p50: Duration,
    p99: Duration,
    streamed_bytes: u64,
}

async fn round(mode: Mode, n: u64, parallel: u64) -> Result {
    let resources = Resources {
        components: vec![ComponentSpec::new("bench-pubsub", "pubsub.in-memory")],
        ..Resources::default()
    };
    let runtime = Runtime::new(resources, &Registry::with_builtins()).unwrap();
    let streamed = Arc::new(AtomicU64::new(0));
    let mut stop_console = None;
    if mode != Mode::Off {
        let console = Console::new(Settings::default(), Arc::new(NoApps), Some(runtime.clone()));
        runtime.tap().set(console.observer());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = console.clone();
        tokio::spawn(async move {
            let _ = serving
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        stop_console = Some(stop);
        if mode == Mode::Viewer {
            let mut stream = reqwest::get(format!("http://{addr}/api/stream"))
                .await
                .unwrap();
            let streamed = streamed.clone();
            tokio::spawn(async move {
                while let Ok(Some(chunk)) = stream.chunk().await {
                    streamed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let port = subscriber(tx).await;
    let mut sub = SidecarOptions::new("sub");
    sub.app_port = Some(port);
    let sub = start_sidecar(runtime.clone(), sub).await.unwrap();
    assert!(sub.wait_ready(Duration::from_secs(10)).await);
    let publisher = start_sidecar(runtime.clone(), SidecarOptions::new("pub"))
        .await
        .unwrap();
    let url = format!(
        "{}/v1.0/publish/bench-pubsub/bench",
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
                    .json(&json!({"seq": seq, "title": "a task", "task_id": seq}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 204);
                seq += parallel;
            }
        }));
    }
    let mut received = Vec::with_capacity(n as usize);
    while received.len() < n as usize {
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("deliveries stalled")
            .unwrap();
        received.push(got);
    }
    let elapsed = start.elapsed();
    for t in tasks {
        t.await.unwrap();
    }
    let mut latencies: Vec<Duration> = {
        let sent = sent.lock().unwrap();
        received
            .iter()
            .map(|(seq, at)| at.duration_since(sent[seq]))
            .collect()
    };
    latencies.sort();
    let pick = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    publisher.shutdown().await;
    sub.shutdown().await;
    runtime.tap().clear();
    if let Some(stop) = stop_console {
        let _ = stop.send(());
    }
    runtime.shutdown().await;
    Result {
        events_per_s: n as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        streamed_bytes: streamed.load(Ordering::Relaxed),
    }
}

fn main() {
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let parallel = 16;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm-up: connection pools, allocator, page cache.
        round(Mode::Off, n / 10, parallel).await;
        let mut all: HashMap<&str, Vec<Result>> = HashMap::new();
        for _ in 0..rounds {
            for (name, mode) in [
                ("off", Mode::Off),
                ("on, idle", Mode::Idle),
                ("on, viewer", Mode::Viewer),
            ] {
                all.entry(name).or_default().push(round(mode, n, parallel).await);
            }
        }
        for name in ["off", "on, idle", "on, viewer"] {
            let results = &all[name];
            let mut rates: Vec<f64> = results.iter().map(|r| r.events_per_s).collect();
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            let p50 = results.iter().map(|r| r.p50).max().unwrap_or_default();
            let p99 = results.iter().map(|r| r.p99).max().unwrap_or_default();
            let streamed: u64 = results.iter().map(|r| r.streamed_bytes).sum();
            println!(
                "console {name:<10}: {n} events x {rounds} rounds, {parallel} publishers: median {median:.0} events/s (rounds {:?}), worst p50 {:.2} ms, worst p99 {:.2} ms, streamed {streamed} bytes",
                rates.iter().map(|r| r.round() as u64).collect::<Vec<_>>(),
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
            );
        }
    });
}
