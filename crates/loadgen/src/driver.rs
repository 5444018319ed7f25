//! Sending the requests: closed loop at a fixed concurrency, or open loop at a fixed rate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Url;
use tokio::sync::Semaphore;

use crate::cli::Args;
use crate::sink::SmtpSink;

/// One request.
#[derive(Debug, Clone)]
pub struct Sample {
    pub seq: u64,
    /// When it was sent, from the start of the run.
    pub sent_at: Duration,
    pub sent: Instant,
    pub http: Duration,
    /// `None` when it succeeded, else a short reason (status or transport error).
    pub error: Option<String>,
    /// Request sent -> email accepted by the sink.
    pub e2e: Option<Duration>,
}

/// What a run measured.
#[derive(Debug)]
pub struct Run {
    pub samples: Vec<Sample>,
    /// Time spent sending.
    pub send_time: Duration,
    /// Start of the run -> last email (or end of the drain).
    pub total_time: Duration,
    pub duplicate_emails: u64,
    pub unmatched_emails: u64,
}

impl Run {
    pub fn errors(&self) -> BTreeMap<String, u64> {
        let mut errors = BTreeMap::new();
        for s in &self.samples {
            if let Some(e) = &s.error {
                *errors.entry(e.clone()).or_default() += 1;
            }
        }
        errors
    }
}

struct Shared {
    client: reqwest::Client,
    /// `/api/tasks` of each task-api instance; requests take them in turn.
    endpoints: Vec<Url>,
    tokens: Vec<String>,
    sink: SmtpSink,
    start: Instant,
    next: AtomicU64,
    samples: Mutex<Vec<Sample>>,
}

pub async fn run(args: &Args, sink: &SmtpSink) -> anyhow::Result<Run> {
    let endpoints = args
        .url
        .iter()
        .map(|u| endpoint(u.as_str()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!endpoints.is_empty(), "--url: no URL given");
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .pool_max_idle_per_host(args.concurrency as usize)
        .build()?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        client,
        endpoints,
        tokens: args.token.clone(),
        sink: sink.clone(),
        start,
        next: AtomicU64::new(0),
        samples: Mutex::new(Vec::new()),
    });
    let deadline = start + args.duration;

    match args.rate {
        None => closed_loop(&shared, args.concurrency, deadline).await,
        Some(rate) => open_loop(&shared, rate, args.concurrency, deadline).await?,
    }
    let send_time = start.elapsed();

    let mut samples = std::mem::take(
        &mut *shared
            .samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let expected = samples.iter().filter(|s| s.error.is_none()).count();
    let drain_deadline = Instant::now() + args.drain;
    while sink.matched() < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut last = start;
    for s in &mut samples {
        if let Some(arrived) = sink.arrival(s.seq) {
            s.e2e = Some(arrived.saturating_duration_since(s.sent));
            last = last.max(arrived);
        }
    }
    samples.sort_by_key(|s| s.seq);
    let (duplicate_emails, unmatched_emails) = sink.strays();
    Ok(Run {
        samples,
        send_time,
        total_time: last.duration_since(start).max(send_time),
        duplicate_emails,
        unmatched_emails,
    })
}

/// `<url>/api/tasks`, refusing anything but loopback: this tool must not load someone else.
fn endpoint(url: &str) -> anyhow::Result<Url> {
    let base = Url::parse(url).with_context(|| format!("--url {url}"))?;
    let host = base.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(loopback, "--url {url}: only loopback addresses are allowed");
    Ok(base.join("/api/tasks")?)
}

async fn closed_loop(shared: &Arc<Shared>, concurrency: u32, deadline: Instant) {
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let shared = Arc::clone(shared);
        workers.spawn(async move {
            while Instant::now() < deadline {
                one(&shared).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

async fn open_loop(
    shared: &Arc<Shared>,
    rate: f64,
    max_in_flight: u32,
    deadline: Instant,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        rate.is_finite() && (0.1..=100_000.0).contains(&rate),
        "--rate must be between 0.1 and 100000"
    );
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let permits = Arc::new(Semaphore::new(max_in_flight as usize));
    let mut requests = tokio::task::JoinSet::new();
    loop {
        ticks.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        // At the in-flight cap the schedule slips (reported as a lower achieved rate).
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let shared = Arc::clone(shared);
        requests.spawn(async move {
            one(&shared).await;
            drop(permit);
        });
    }
    while requests.join_next().await.is_some() {}
    Ok(())
}

async fn one(shared: &Shared) {
    let seq = shared.next.fetch_add(1, Ordering::Relaxed);
    let title = format!("Load test {}", shared.sink.marker().of(seq));
    let sent = Instant::now();
    let result = shared
        .client
        .post(shared.endpoints[(seq % shared.endpoints.len() as u64) as usize].clone())
        .bearer_auth(&shared.tokens[(seq % shared.tokens.len() as u64) as usize])
        .json(&serde_json::json!({ "title": title }))
        .send()
        .await;
    let error = match result {
        Ok(response) if response.status().is_success() => {
            // Read the body so the connection goes back to the pool.
            response.bytes().await.err().map(|e| format!("body: {e}"))
        }
        Ok(response) => {
            // The problem+json title says which failure it was (e.g. sidecar unavailable).
            let status = response.status().as_u16();
            let title = response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|p| p.get("title")?.as_str().map(str::to_owned));
            Some(match title {
                Some(title) => format!("HTTP {status}: {title}"),
                None => format!("HTTP {status}"),
            })
        }
        Err(e) if e.is_timeout() => Some("timeout".into()),
        Err(e) if e.is_connect() => Some("connect".into()),
        Err(_) => Some("transport".into()),
    };
    let sample = Sample {
        seq,
        sent_at: sent.duration_since(shared.start),
        sent,
        http: sent.elapsed(),
        error,
        e2e: None,
    };
    shared
        .samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(sample);
}
