//! `POST /api/tasks` through the in-process sidecar (in-memory state and pub/sub), at a fixed
//! concurrency, compared with a bare axum handler making the same two sidecar calls (one state
//! transaction, one publish), and with the two-hop limit: that handler's two calls made to a
//! server that answers at once. task-api also runs with one user alone (every worker sending as
//! the same user). Prints requests/s and p50/p99 latency.
//!
//! task-api is then driven open loop at half of the throughput it reached, for its latency
//! under a load it can carry (concurrency 0 in that line: the rate decides, not the workers).
//!
//! `cargo bench -p task-api --bench create_task` (env `BENCH_REQUESTS`, `BENCH_CONCURRENCY`,
//! `BENCH_OUTBOX_SHARDS`). Logging and trace export are set up as the binary sets them up
//! (`service_kit::init_tracing`, so `RUST_LOG` and the `OTEL_*` variables apply): with
//! `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:<port>` the bench also serves an OTLP sink on
//! that port, which accepts every export and counts it, to measure the cost of tracing
//! (`OTEL_TRACES_SAMPLER=traceidratio`, `OTEL_TRACES_SAMPLER_ARG=0.1` or `1`). With `BENCH_FASTAPI_PYTHON` naming a Python that has
//! `benches/fastapi/requirements.txt` installed, the same load also goes to the FastAPI baseline
//! in `benches/fastapi/app.py` on a sidecar of its own (`scripts/bench-fastapi.sh` sets this up).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use dapr_http::{DaprClient, DaprSettings, SaveItem, TransactionOp};
use serde_json::{Value, json};
use service_testing::{Cluster, free_port, spawn_app};
use task_api::{Application, Settings};
use uuid::Uuid;

const SECRET: &str = "bench-secret-0123456789-abcdefghijklmnop";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Report {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
}

impl Report {
    fn print(&mut self, name: &str, concurrency: usize) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies.get(i).copied().unwrap_or_default()
        };
        println!(
            "{name:<28} concurrency {concurrency:>3}  {:>6} req  {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
            self.requests,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1000.0,
            pct(0.99).as_secs_f64() * 1000.0,
            self.errors,
        );
    }
}

impl Report {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends `total` POSTs at a fixed `rate` (open loop: request `i` is due at `i / rate` seconds,
/// whatever the earlier ones are doing). Latency counts from when a request was due, so time
/// spent waiting behind a slow server is measured rather than hidden. Request `i` uses
/// `tokens[i % tokens.len()]`.
async fn drive_at_rate(url: String, tokens: Vec<String>, total: usize, rate: f64) -> Report {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let client = client.clone();
        let url = url.clone();
        let token = tokens[i % tokens.len()].clone();
        requests.spawn(async move {
            let response = client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({"title": format!("rate {i}"), "priority": "low"}))
                .send()
                .await;
            let ok = matches!(response, Ok(r) if r.status().is_success());
            (due.elapsed(), ok)
        });
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    while let Some(result) = requests.join_next().await {
        let (latency, ok) = result.unwrap();
        latencies.push(latency);
        errors += usize::from(!ok);
    }
    Report {
        requests: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
        errors,
    }
}

/// Runs `total` POSTs with `concurrency` workers; worker `w` sends with `tokens[w]`.
async fn drive(url: String, tokens: Vec<String>, total: usize, concurrency: usize) -> Report {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let per_worker = total / concurrency;
    let started = Instant::now();
    let workers = (0..concurrency).map(|w| {
        let client = client.clone();
        let url = url.clone();
        let token = tokens[w % tokens.len()].clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            let mut errors = 0;
            for i in 0..per_worker {
                let t = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"title": format!("bench {w}-{i}"), "priority": "high"}))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {}
                    _ => errors += 1,
                }
                latencies.push(t.elapsed());
            }
            (latencies, errors)
        })
    });
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for result in futures::future::join_all(workers).await {
        let (l, e) = result.unwrap();
        latencies.extend(l);
        errors += e;
    }
    Report {
        requests: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
        errors,
    }
}

#[derive(Clone)]
struct Bare {
    dapr: DaprClient,
}

/// The reference: decode, one transaction, one publish, answer 201. No auth, no reads.
async fn bare_create(State(bare): State<Bare>, Json(body): Json<Value>) -> StatusCode {
    let id = Uuid::now_v7();
    let Ok(item) = SaveItem::new(format!("task:{id}"), &body) else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    if bare
        .dapr
        .transact_state("todo-state", &[TransactionOp::Upsert(item.first_write())])
        .await
        .is_err()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let payload =
        bytes::Bytes::from(serde_json::to_vec(&json!({"task_id": id, "task": body})).unwrap());
    let opts = dapr_http::PublishOptions {
        cloudevent_id: Some(Uuid::now_v7().to_string()),
        cloudevent_type: Some("task-created".into()),
        partition_key: Some(id.to_string()),
        ..Default::default()
    };
    match bare
        .dapr
        .publish_with("todo-pubsub", "task-created", payload, opts)
        .await
    {
        Ok(()) => StatusCode::CREATED,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Export requests and bytes the sink received.
type Exports = std::sync::Arc<std::sync::Mutex<(usize, usize)>>;

/// An OTLP/HTTP sink on the loopback port of `OTEL_EXPORTER_OTLP_ENDPOINT`, when it names one.
async fn otlp_sink() -> Option<Exports> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()?;
    let port: u16 = endpoint
        .strip_prefix("http://127.0.0.1:")?
        .trim_end_matches('/')
        .parse()
        .ok()?;
    let exports = Exports::default();
    let counter = exports.clone();
    let sink = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                let mut seen = counter.lock().unwrap();
                seen.0 += 1;
                seen.1 += body.len();
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, sink).await });
    Some(exports)
}

fn main() {
    let total = env_usize("BENCH_REQUESTS", 4000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let exports = otlp_sink().await;
        service_kit::init_tracing("task-api").unwrap();
        // task-api
        let shards = env_usize("BENCH_OUTBOX_SHARDS", 16).to_string();
        let settings: Settings = service_testing::settings(&[
            ("JWT_SECRET", SECRET),
            ("OUTBOX_GRACE_PERIOD", "60s"),
            ("OUTBOX_SHARDS", shards.as_str()),
        ]);
        let app = spawn_app::<Application>(settings.clone()).await;
        let url = app.url("/api/tasks");
        let cluster = app.cluster.clone();
        let tokens: Vec<String> = (0..concurrency)
            .map(|w| {
                task_api::auth::issue_token(
                    &settings,
                    Uuid::new_v4(),
                    &format!("bench{w}@example.com"),
                    Duration::from_secs(3600),
                )
                .unwrap()
            })
            .collect();
        drive(url.clone(), tokens.clone(), concurrency * 10, concurrency).await; // warm-up
        let mut report = drive(url.clone(), tokens.clone(), total, concurrency).await;
        report.print(&format!("task-api, {concurrency} users"), concurrency);
        // Latency under a load the service can carry: half of the throughput just measured.
        let half = report.throughput() / 2.0;
        let mut at_half = drive_at_rate(url.clone(), tokens.clone(), total, half).await;
        at_half.print(&format!("task-api at {half:.0} req/s"), 0);
        // One user alone: every worker sends with the same token, so every create lands in
        // the same user's index.
        let one_user = vec![tokens[0].clone()];
        drive(url.clone(), one_user.clone(), concurrency * 10, concurrency).await;
        let mut alone = drive(url.clone(), one_user, total, concurrency).await;
        alone.print("task-api, one user alone", concurrency);
        let published = cluster.published("task-created").len();
        println!("  events published: {published}");
        if let Some(exports) = &exports {
            service_kit::flush_traces().await;
            let (requests, bytes) = *exports.lock().unwrap();
            println!("  OTLP exports received: {requests} ({bytes} bytes)");
        }

        // Bare reference on its own cluster.
        let cluster = Cluster::in_memory().await.unwrap();
        let sidecar = cluster.sidecar("bare").start().await.unwrap();
        let dapr = DaprClient::new(DaprSettings::with_endpoint(sidecar.http_endpoint())).unwrap();
        let router = axum::Router::new()
            .route("/api/tasks", post(bare_create))
            .with_state(Bare { dapr });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/tasks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        drive(url.clone(), tokens.clone(), concurrency * 10, concurrency).await;
        let mut report = drive(url, tokens.clone(), total, concurrency).await;
        report.print("bare axum (txn + publish)", concurrency);

        // Two-hop limit: the same handler's two calls, to a server that answers at once, so
        // what is left is the HTTP cost of a handler making two calls.
        let null = axum::Router::new().fallback(|| async { StatusCode::NO_CONTENT });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let null_endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, null).await });
        let dapr = DaprClient::new(DaprSettings::with_endpoint(null_endpoint)).unwrap();
        let router = axum::Router::new()
            .route("/api/tasks", post(bare_create))
            .with_state(Bare { dapr });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/tasks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        drive(url.clone(), tokens.clone(), concurrency * 10, concurrency).await;
        let mut report = drive(url, tokens.clone(), total, concurrency).await;
        report.print("two-hop limit (null server)", concurrency);

        // The Python baseline, when a Python with its requirements is given.
        if let Ok(python) = std::env::var("BENCH_FASTAPI_PYTHON") {
            let cluster = Cluster::in_memory().await.unwrap();
            let sidecar = cluster.sidecar("fastapi").start().await.unwrap();
            let mut baseline = FastApi::start(&python, &sidecar.http_endpoint()).await;
            let url = format!("http://127.0.0.1:{}/api/tasks", baseline.port);
            drive(url.clone(), tokens.clone(), concurrency * 10, concurrency).await;
            let mut report = drive(url, tokens, total, concurrency).await;
            report.print("FastAPI, 2 uvicorn workers", concurrency);
            baseline.stop();
        }
    });
}

/// `benches/fastapi/app.py` under uvicorn with two worker processes.
struct FastApi {
    child: std::process::Child,
    port: u16,
}

impl FastApi {
    async fn start(python: &str, dapr_endpoint: &str) -> Self {
        let port = free_port();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fastapi");
        let child = std::process::Command::new(python)
            .args([
                "-m",
                "uvicorn",
                "app:app",
                "--workers",
                "2",
                "--log-level",
                "warning",
            ])
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--app-dir",
                dir,
            ])
            .env("DAPR_HTTP_ENDPOINT", dapr_endpoint)
            .env("JWT_SECRET", SECRET)
            .spawn()
            .unwrap();
        let health = format!("http://127.0.0.1:{port}/healthz");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reqwest::get(&health)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                Instant::now() < deadline,
                "uvicorn did not answer on {health}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, port }
    }

    fn stop(&mut self) {
        // uvicorn's supervisor stops its workers on SIGTERM; SIGKILL would orphan them.
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
