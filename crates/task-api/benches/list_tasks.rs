//! `GET /api/tasks` latency for one user with many tasks (10,000 by default, the default
//! open-task limit), through the in-process sidecar (in-memory state): p50/p99 of the first
//! page and of a deep page (a cursor past 90% of the tasks), sequential requests.
//!
//! `cargo bench -p task-api --bench list_tasks` (env `BENCH_TASKS`, `BENCH_LISTS`,
//! `BENCH_PAGE`); `cargo test --release -p task-api --bench list_tasks` runs it the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use service_testing::spawn_app;
use task_api::{Application, Settings};

const SECRET: &str = "bench-secret-0123456789-abcdefghijklmnop";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default().as_secs_f64() * 1000.0
}

async fn measure(client: &reqwest::Client, url: &str, token: &str, lists: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(lists);
    for _ in 0..lists {
        let started = Instant::now();
        let response = client.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        assert!(!page["items"].as_array().unwrap().is_empty());
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

#[tokio::main]
async fn main() {
    let tasks = env_usize("BENCH_TASKS", 10_000);
    let lists = env_usize("BENCH_LISTS", 200);
    let page = env_usize("BENCH_PAGE", 50);
    let settings: Settings = service_testing::settings(&[
        ("JWT_SECRET", SECRET),
        ("MAX_OPEN_TASKS_PER_USER", &tasks.max(1).to_string()),
    ]);
    let app = spawn_app::<Application>(settings.clone()).await;
    let user = uuid::Uuid::new_v4();
    let token = task_api::auth::issue_token(
        &settings,
        user,
        "bench@example.com",
        Duration::from_secs(3600),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let create_url = app.url("/api/tasks");
    let started = Instant::now();
    let mut ids = Vec::with_capacity(tasks);
    let workers = 16;
    for chunk in (0..tasks).collect::<Vec<_>>().chunks(workers) {
        let creates = chunk.iter().map(|n| {
            let (client, url, token) = (&client, &create_url, &token);
            async move {
                let response = client
                    .post(url.as_str())
                    .bearer_auth(token)
                    .json(&json!({ "title": format!("task {n}") }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                let task: Value = response.json().await.unwrap();
                task["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()
            }
        });
        ids.extend(futures::future::join_all(creates).await);
    }
    println!(
        "created {tasks} tasks for one user in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let deep = ids[tasks * 9 / 10];
    let first_url = app.url(&format!("/api/tasks?limit={page}"));
    let deep_url = app.url(&format!(
        "/api/tasks?limit={page}&cursor={}",
        task_api::listing::encode_cursor(deep)
    ));
    for (name, url) in [("first page", first_url), ("deep page (90%)", deep_url)] {
        measure(&client, &url, &token, lists / 10).await;
        let latencies = measure(&client, &url, &token, lists).await;
        println!(
            "GET /api/tasks {name:<16} {tasks} tasks, limit {page}: p50 {:>7.2} ms  p99 {:>7.2} ms  ({lists} requests)",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
        );
    }
    app.stop().await;
}
