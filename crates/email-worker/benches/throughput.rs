//! End-to-end throughput: task-created events published through a local sidecar, delivered to
//! the worker, sent over SMTP to a local sink (a real SMTP server on threads), until the sink has
//! accepted every message. Reported per `MAX_CONCURRENT_SENDS`, with end-to-end latency
//! percentiles (publish call start to SMTP acceptance).
//!
//! `cargo bench -p email-worker --bench throughput` (EVENTS=500 by default).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{SmtpSink, resources_dir_with, settings_for, spawn_app_on, task_created};
use tokio::sync::Semaphore;

const WARM_UP: usize = 20;
/// Deliveries the sidecar makes at once; above every send bound measured, so the worker's own
/// bound is what limits.
const DELIVERY_CONCURRENCY: usize = 64;
/// Publish calls in flight at once (the producer side).
const PUBLISHERS: usize = 32;

fn main() {
    let events: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "email-worker throughput: {events} task-created events, sidecar delivery concurrency {DELIVERY_CONCURRENCY}, {PUBLISHERS} concurrent publishers"
    );
    println!("max_concurrent_sends | seconds | emails/s | p50 ms | p99 ms");
    for sends in [1, 4, 16, 64] {
        runtime.block_on(run(events, sends));
    }
}

async fn run(events: usize, sends: usize) {
    let sink = SmtpSink::start().unwrap();
    let mut settings = settings_for(sink.port());
    settings.max_concurrent_sends = sends;
    let app = spawn_app_on(resources_dir_with(DELIVERY_CONCURRENCY), settings).await;

    for i in 0..WARM_UP {
        app.publish(&task_created(
            &format!("warm{i}@example.com"),
            "warm up",
            "",
        ))
        .await;
    }
    sink.wait_for(WARM_UP, Duration::from_secs(60))
        .await
        .map_err(|got| format!("warm-up: {} of {WARM_UP} emails arrived", got.len()))
        .unwrap();

    let envelopes: Vec<_> = (0..events)
        .map(|i| {
            task_created(
                &format!("user{i}@example.com"),
                &format!("Task {i}"),
                "bench",
            )
        })
        .collect();
    let producer = app.producer("task-api").await;
    let gate = Arc::new(Semaphore::new(PUBLISHERS));
    let mut published_at = HashMap::new();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for envelope in envelopes {
        let permit = Arc::clone(&gate).acquire_owned().await.unwrap();
        published_at.insert(envelope.event_id.to_string(), Instant::now());
        let producer = producer.clone();
        tasks.spawn(async move {
            producer
                .publish(events::PUBSUB_NAME, &envelope)
                .await
                .unwrap();
            drop(permit);
        });
    }
    let received = sink
        .wait_for(WARM_UP + events, Duration::from_secs(300))
        .await
        .map_err(|got| format!("{} of {} emails arrived", got.len(), WARM_UP + events))
        .unwrap();
    let elapsed = started.elapsed();
    while tasks.join_next().await.is_some() {}

    let mut latencies: Vec<Duration> = received[WARM_UP..]
        .iter()
        .filter_map(|m| {
            let parsed = m.parsed().unwrap();
            let id = parsed.message_id()?.split('.').next()?.to_owned();
            Some(m.at - *published_at.get(&id)?)
        })
        .collect();
    assert_eq!(latencies.len(), events, "every email matched to its event");
    assert_eq!(received.len(), WARM_UP + events, "no duplicates");
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
    println!(
        "{sends:>20} | {:>7.2} | {:>8.0} | {:>6.1} | {:>6.1}",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
    app.stop().await;
}
