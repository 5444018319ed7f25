//! Scan cost and memory with many tracked tasks and a few hundred due in the window.
//!
//! Seeds an in-process sidecar's in-memory store with `TRACKED` task projections and their
//! due-date buckets (most due days ahead, `DUE` inside the next window), then measures:
//! the first scan (no watermark: reads the whole window and publishes the due ones), steady
//! scans (the clock moves by one scan interval), and a scan that finds another batch come due.
//! The same runs with 1,000 tracked tasks show that the cost follows the due tasks, not the
//! tracked ones. Run with `cargo bench -p reminder-scheduler --bench scan`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use dapr_http::{DaprClient, DaprSettings, SaveItem};
use reminder_scheduler::buckets::{Bucket, Buckets};
use reminder_scheduler::context::Context;
use reminder_scheduler::lease::Lease;
use reminder_scheduler::policy::Policy;
use reminder_scheduler::projection::{TaskRecord, task_key};
use reminder_scheduler::scanner::scan;
use reminder_scheduler::store::Store;
use reminder_scheduler::{ManualClock, Settings};
use service_testing::Cluster;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

const DUE: usize = 300;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Bench {
    ctx: Arc<Context>,
    clock: ManualClock,
    t0: DateTime<Utc>,
    _cluster: Cluster,
}

async fn setup() -> Bench {
    let cluster = Cluster::in_memory().await.unwrap();
    let sidecar = cluster.sidecar("reminder-scheduler").start().await.unwrap();
    let dapr = DaprClient::new(DaprSettings::with_endpoint(sidecar.http_endpoint())).unwrap();
    std::mem::forget(sidecar);
    let settings: Settings = service_testing::settings(&[]);
    let store = Store::new(dapr.clone(), "todo-state");
    let t0 = Utc::now().trunc_subsecs(0);
    let clock = ManualClock::new(t0);
    let ctx = Arc::new(Context {
        dapr,
        store: store.clone(),
        pubsub: "todo-pubsub".into(),
        app_id: "reminder-scheduler".into(),
        policy: Policy {
            lead: chrono::Duration::hours(1),
            remind_overdue: false,
            buckets: Buckets::new(settings.bucket_width),
        },
        clock: Arc::new(clock.clone()),
        tombstone_ttl: settings.tombstone_ttl,
        scan_interval: Duration::from_secs(5),
        scan_lookback: settings.scan_lookback,
        lease_renew_interval: settings.lease_renew_interval,
        // Long enough for the whole run without renewals.
        lease: Lease::new(store, "bench", Duration::from_secs(3600)),
        scan_now: Notify::new(),
        scans: watch::channel(0).0,
    });
    ctx.lease.acquire_or_renew().await.unwrap();
    Bench {
        ctx,
        clock,
        t0,
        _cluster: cluster,
    }
}

fn record(id: Uuid, due: DateTime<Utc>, bucket: i64) -> TaskRecord {
    TaskRecord {
        task_id: id,
        version: 1,
        open: true,
        due_date: Some(due),
        user_id: Uuid::from_u128(1),
        user_email: "ada@example.com".into(),
        title: "a task with a reasonably long title".into(),
        filed_in: Some(bucket),
        reminded_for: None,
        scheduled_by: Uuid::now_v7(),
        correlation_id: "bench".into(),
        traceparent: None,
    }
}

/// Seeds `tracked` tasks: `DUE` due inside the first window, `DUE` more in the ten minutes
/// after it, the rest spread over the next 30 days.
async fn seed(b: &Bench, tracked: usize) {
    let grid = b.ctx.policy.buckets;
    let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
    let mut items = Vec::new();
    for i in 0..tracked {
        let offset = match i {
            i if i < DUE => 60 + (i as i64 * 3599 / DUE as i64),
            i if i < 2 * DUE => 3600 + 60 + ((i - DUE) as i64 * 600 / DUE as i64),
            i => 7200 + (i as i64 * 7919) % (30 * 86_400),
        };
        let due = b.t0 + chrono::Duration::seconds(offset);
        let id = Uuid::now_v7();
        let bucket = grid.start_of(due);
        buckets.entry(bucket).or_default().file(id, 1);
        items.push(SaveItem::new(task_key(id), &record(id, due, bucket)).unwrap());
    }
    for (start, bucket) in &buckets {
        items.push(SaveItem::new(Buckets::key(*start), bucket).unwrap());
    }
    for chunk in items.chunks(1000) {
        b.ctx.dapr.save_state("todo-state", chunk).await.unwrap();
    }
}

async fn timed_scan(b: &Bench) -> (Duration, usize, usize) {
    let started = Instant::now();
    let report = scan(&b.ctx).await.unwrap();
    (started.elapsed(), report.published, report.buckets_read)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn run(tracked: usize) {
    let rss_before = rss_kib();
    let b = setup().await;
    let seeding = Instant::now();
    seed(&b, tracked).await;
    let rss_seeded = rss_kib();
    println!(
        "\n== {tracked} tracked tasks ({DUE} due in the first window) — seeded in {:.1} s, RSS {} MiB (+{} MiB for the store)",
        seeding.elapsed().as_secs_f64(),
        rss_seeded / 1024,
        rss_seeded.saturating_sub(rss_before) / 1024
    );

    let (took, published, buckets) = timed_scan(&b).await;
    println!(
        "first scan (no watermark): {} — {published} published, {buckets} buckets read",
        ms(took)
    );

    let mut steady = Vec::new();
    for _ in 0..50 {
        b.clock.advance(chrono::Duration::seconds(5));
        steady.push(timed_scan(&b).await);
    }
    let mut times: Vec<Duration> = steady.iter().map(|s| s.0).collect();
    times.sort();
    let published: usize = steady.iter().map(|s| s.1).sum();
    println!(
        "steady scans (clock +5 s each, 50 scans): p50 {} p99 {} max {} — {published} published, {} buckets read each",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100]),
        ms(times[times.len() - 1]),
        steady[0].2
    );

    b.clock.set(b.t0 + chrono::Duration::minutes(11));
    let (took, published, buckets) = timed_scan(&b).await;
    println!(
        "scan after the clock jumps 11 min: {} — {published} published, {buckets} buckets read",
        ms(took)
    );
    let rss_after = rss_kib();
    println!(
        "RSS after scans: {} MiB ({:+} MiB during the scans)",
        rss_after / 1024,
        (rss_after as i64 - rss_seeded as i64) / 1024
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The small run goes first so the large one does not pay for process warm-up.
        run(1_000).await;
        run(100_000).await;
    });
}
