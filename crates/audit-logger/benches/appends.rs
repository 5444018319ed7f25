//! Append throughput through an in-process sidecar with the in-memory store.
//!
//! * `record, hot task`: every event belongs to one task (and one user), so every append
//!   contends for the same two trail tails.
//! * `record, many tasks`: one task per event, spread over 50 users.
//! * `end to end`: events published through a task-api sidecar and delivered to the running
//!   service, until all are in their trails.
//!
//! Each event is one entry in its task trail and one in its user trail. Run with
//! `cargo bench -p audit-logger --bench appends`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_logger::context::AppState;
use audit_logger::entry::EntryDraft;
use audit_logger::record::record;
use audit_logger::{Application, Settings};
use chrono::Utc;
use dapr_http::{DaprClient, DaprSettings};
use futures::StreamExt as _;
use serde_json::{Value, json};
use service_testing::{Cluster, TestApp, spawn_app};
use uuid::Uuid;

const EVENTS: usize = 2_000;
const CONCURRENCY: usize = 16;

fn envelope(task: Uuid, user: Uuid, version: u64) -> Value {
    json!({
        "event_id": Uuid::now_v7().to_string(), "event_type": "task-updated", "schema_version": 1,
        "timestamp": "2026-01-02T03:04:05.123456Z", "correlation_id": "bench", "source": "task-api",
        "data": {"task": {"task_id": task.to_string(), "user_id": user.to_string(), "version": version,
                          "title": "bench", "status": "open", "priority": "low"},
                 "changed_fields": ["title"]}
    })
}

/// The service with its sidecar, entries going nowhere but the store.
async fn start() -> TestApp<Application> {
    let settings: Settings = service_testing::settings(&[
        ("AUDIT_ADMIN_TOKEN", "bench-admin-token-0123456789"),
        ("AUDIT_CHAIN_KEY", "bench-chain-key-0123456789abcdef0123"),
        ("AUDIT_STDOUT", "false"),
    ]);
    spawn_app(settings).await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn record_run(name: &str, ctx: &AppState, envelopes: Vec<Value>) {
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(envelopes)
        .map(|env| {
            let ctx = Arc::clone(ctx);
            async move {
                let draft =
                    EntryDraft::from_envelope("task-updated", "", "task-api", &env, Utc::now())
                        .unwrap();
                let t = Instant::now();
                record(&ctx, &draft, &env).await.unwrap();
                t.elapsed()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{name:<28} {EVENTS} events in {:>7.2?}: {:>7.0} events/s ({:>7.0} trail entries/s), p50 {:>7.2?}, p99 {:>7.2?}",
        elapsed,
        EVENTS as f64 / elapsed.as_secs_f64(),
        2.0 * EVENTS as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
}

async fn end_to_end(name: &str, cluster: &Cluster, ctx: &AppState, envelopes: Vec<Value>) {
    let producer = cluster.sidecar("task-api").start().await.unwrap();
    let dapr = DaprClient::new(DaprSettings::with_endpoint(producer.http_endpoint())).unwrap();
    let tasks: Vec<String> = envelopes
        .iter()
        .map(|e| e["data"]["task"]["task_id"].as_str().unwrap().to_owned())
        .collect();
    let started = Instant::now();
    futures::stream::iter(envelopes)
        .for_each_concurrent(CONCURRENCY, |env| {
            let dapr = dapr.clone();
            async move {
                let id = env["event_id"].as_str().unwrap().to_owned();
                let opts = dapr_http::PublishOptions {
                    cloudevent_id: Some(id),
                    cloudevent_type: Some("task-updated".into()),
                    ..Default::default()
                };
                let body = bytes::Bytes::from(serde_json::to_vec(&env).unwrap());
                dapr.publish_with("todo-pubsub", "task-updated", body, opts)
                    .await
                    .unwrap();
            }
        })
        .await;
    // Done when every task trail holds its share.
    let mut expected: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for t in &tasks {
        *expected.entry(t.clone()).or_default() += 1;
    }
    for (task, n) in &expected {
        let trail = audit_logger::trail::TrailId::Task(task.clone());
        loop {
            let head = ctx.trails.head(&trail).await.unwrap();
            if head.is_some_and(|h| h.count >= *n) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{name:<28} {} events in {:>7.2?}: {:>7.0} events/s",
        tasks.len(),
        elapsed,
        tasks.len() as f64 / elapsed.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() {
    let app = start().await;
    let (cluster, ctx) = (app.cluster.clone(), app.handle.clone());
    let (task, user) = (Uuid::now_v7(), Uuid::now_v7());
    let hot: Vec<Value> = (0..EVENTS)
        .map(|i| envelope(task, user, i as u64 + 1))
        .collect();
    record_run("record, hot task", &ctx, hot).await;
    let users: Vec<Uuid> = (0..50).map(|_| Uuid::now_v7()).collect();
    let many: Vec<Value> = (0..EVENTS)
        .map(|i| envelope(Uuid::now_v7(), users[i % 50], 1))
        .collect();
    record_run("record, many tasks", &ctx, many).await;

    let (task, user) = (Uuid::now_v7(), Uuid::now_v7());
    let hot: Vec<Value> = (0..1000)
        .map(|i| envelope(task, user, i as u64 + 1))
        .collect();
    end_to_end("end to end, hot task", &cluster, &ctx, hot).await;
    let many: Vec<Value> = (0..1000)
        .map(|i| envelope(Uuid::now_v7(), users[i % 50], 1))
        .collect();
    end_to_end("end to end, many tasks", &cluster, &ctx, many).await;
}
