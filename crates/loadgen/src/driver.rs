//! Sending the requests: closed loop at a fixed concurrency, or open loop at a fixed rate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Url;
use tokio::sync::Semaphore;

use crate::cli::Args;
use crate::sink::{Marker, SmtpSink};

/// One request.
#[derive(Debug, Clone)]
pub struct Sample {
    pub seq: u64,
    /// When it was sent (at a fixed rate: when it was due), from the start of the run.
    pub sent_at: Duration,
    /// What its latencies count from: when it was sent, or at a fixed rate when it was due.
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
    /// When the run began; `Sample::sent_at` counts from here.
    pub start: Instant,
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

/// What each request does.
enum Target {
    /// `POST /api/tasks` on each task-api instance in turn, with a marked title.
    Create(Vec<Url>),
    /// `GET` of one URL.
    Get(Url),
}

struct Shared {
    client: reqwest::Client,
    target: Target,
    tokens: Vec<String>,
    marker: Marker,
    start: Instant,
    next: AtomicU64,
    /// `--requests`: no request numbered at or past this is sent.
    limit: Option<u64>,
    samples: Mutex<Vec<Sample>>,
}

/// Sends the load, then waits (up to `--drain`) until the `sink` (when there is one) has every
/// acknowledged request's email and `caught_up(acknowledged)` holds for whatever else follows the
/// creates (the audit-logger's count).
pub async fn run(
    args: &Args,
    sink: Option<&SmtpSink>,
    caught_up: &dyn Fn(usize) -> bool,
) -> anyhow::Result<Run> {
    let target = match &args.get {
        Some(url) => Target::Get(loopback(url)?),
        None => {
            let endpoints = args
                .url
                .iter()
                .map(|u| endpoint(u.as_str()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            anyhow::ensure!(!endpoints.is_empty(), "--url: no URL given");
            Target::Create(endpoints)
        }
    };
    if matches!(target, Target::Create(_)) {
        anyhow::ensure!(!args.token.is_empty(), "--token: no token given");
    }
    let in_flight = args.concurrency as usize;
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .pool_max_idle_per_host(in_flight)
        .build()?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        client,
        target,
        tokens: args.token.clone(),
        marker: sink.map_or_else(|| Marker::new(0), |s| s.marker().clone()),
        start,
        next: AtomicU64::new(0),
        limit: args.requests,
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
    let done = || sink.is_none_or(|s| s.matched() >= expected) && caught_up(expected);
    while !done() && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut last = start;
    if let Some(sink) = sink {
        for s in &mut samples {
            if let Some(arrived) = sink.arrival(s.seq) {
                s.e2e = Some(arrived.saturating_duration_since(s.sent));
                last = last.max(arrived);
            }
        }
    }
    samples.sort_by_key(|s| s.seq);
    let (duplicate_emails, unmatched_emails) = sink.map_or((0, 0), SmtpSink::strays);
    Ok(Run {
        start,
        samples,
        send_time,
        total_time: last.duration_since(start).max(send_time),
        duplicate_emails,
        unmatched_emails,
    })
}

/// A URL on a loopback host: this tool must not load someone else.
fn loopback(url: &str) -> anyhow::Result<Url> {
    let parsed = Url::parse(url).with_context(|| format!("{url}: not a URL"))?;
    let host = parsed.host_str().unwrap_or_default();
    let is_loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(is_loopback, "{url}: only loopback addresses are allowed");
    Ok(parsed)
}

/// `<url>/api/tasks` of a loopback base URL.
fn endpoint(url: &str) -> anyhow::Result<Url> {
    let base = loopback(url).with_context(|| format!("--url {url}"))?;
    Ok(base.join("/api/tasks")?)
}

async fn closed_loop(shared: &Arc<Shared>, concurrency: u32, deadline: Instant) {
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let shared = Arc::clone(shared);
        workers.spawn(async move {
            while Instant::now() < deadline {
                let Some(seq) = shared.take() else { break };
                one(&shared, seq, Instant::now()).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

/// Request `i` is due at `start + i / rate`, whatever the earlier ones are doing, and its
/// latency counts from then: at the in-flight cap it waits, and the wait is measured.
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
    let permits = Arc::new(Semaphore::new(max_in_flight as usize));
    let mut requests = tokio::task::JoinSet::new();
    for i in 0u64.. {
        let due = shared.start + Duration::from_secs_f64(i as f64 / rate);
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let Some(seq) = shared.take() else { break };
        let shared = Arc::clone(shared);
        requests.spawn(async move {
            one(&shared, seq, due).await;
            drop(permit);
        });
        // Finished requests are collected as we go, so a long run holds only those in flight.
        while requests.try_join_next().is_some() {}
    }
    while requests.join_next().await.is_some() {}
    Ok(())
}

impl Shared {
    /// The next request's number, or `None` once `--requests` have been taken.
    fn take(&self) -> Option<u64> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        self.limit.is_none_or(|limit| seq < limit).then_some(seq)
    }
}

/// Sends request `seq`; its latency counts from `from` (when it was sent, or when it was due).
async fn one(shared: &Shared, seq: u64, from: Instant) {
    let request = match &shared.target {
        Target::Create(endpoints) => {
            let title = format!("Load test {}", shared.marker.of(seq));
            shared
                .client
                .post(endpoints[(seq % endpoints.len() as u64) as usize].clone())
                .bearer_auth(&shared.tokens[(seq % shared.tokens.len() as u64) as usize])
                .json(&serde_json::json!({ "title": title }))
        }
        Target::Get(url) => shared.client.get(url.clone()),
    };
    let result = request.send().await;
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
        sent_at: from.saturating_duration_since(shared.start),
        sent: from,
        http: from.elapsed(),
        error,
        e2e: None,
    };
    shared
        .samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(sample);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use clap::Parser;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An HTTP server on loopback that answers one request at a time, each after `service`:
    /// its capacity is `1 / service` requests per second, whatever the load.
    async fn serial_server(service: Duration) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let one_at_a_time = Arc::clone(&one_at_a_time);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.clear();
                        let guard = one_at_a_time.lock().await;
                        tokio::time::sleep(service).await;
                        drop(guard);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if conn.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}/v1.0/state/s/k")
    }

    fn parse(extra: &[&str]) -> Args {
        Args::parse_from(["loadgen", "--drain", "0s"].iter().chain(extra))
    }

    #[tokio::test]
    async fn at_a_fixed_rate_latency_counts_from_when_a_request_was_due() {
        // 100 requests/s offered to a server that manages 25/s, at most 2 in flight: requests
        // wait for a permit, and that wait is part of their latency.
        let url = serial_server(Duration::from_millis(40)).await;
        let args = parse(&[
            "--get",
            &url,
            "--rate",
            "100",
            "--concurrency",
            "2",
            "--requests",
            "20",
            "--duration",
            "10s",
        ]);
        let run = run(&args, None, &|_| true).await.unwrap();
        assert_eq!(run.samples.len(), 20);
        assert!(run.samples.iter().all(|s| s.error.is_none()));
        // Request i was due at i * 10 ms and the server finishes one every 40 ms, so the last
        // one ends near 800 ms, ~610 ms after it was due; from when it went out it would be
        // ~80 ms (one in service ahead of it, then its own 40 ms).
        let last = run.samples.last().unwrap();
        let due_ms = last.sent_at.as_secs_f64() * 1e3;
        assert!((189.0..=191.0).contains(&due_ms), "due at {due_ms} ms");
        assert!(
            last.http >= Duration::from_millis(500),
            "latency from the schedule: {:?}",
            last.http
        );
    }

    #[tokio::test]
    async fn requests_stop_a_closed_loop_run_at_that_count() {
        let url = serial_server(Duration::from_millis(1)).await;
        let args = parse(&[
            "--get",
            &url,
            "--concurrency",
            "4",
            "--requests",
            "7",
            "--duration",
            "10s",
        ]);
        let started = Instant::now();
        let run = run(&args, None, &|_| true).await.unwrap();
        assert_eq!(run.samples.len(), 7);
        assert!(started.elapsed() < Duration::from_secs(5));
        let seqs: Vec<u64> = run.samples.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (0..7).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn only_loopback_targets_are_accepted() {
        let args = parse(&[
            "--get",
            "http://192.0.2.1/v1.0/state/s/k",
            "--requests",
            "1",
        ]);
        let error = run(&args, None, &|_| true).await.unwrap_err();
        assert!(error.to_string().contains("only loopback"), "{error}");
        let args = parse(&["--url", "http://example.com", "--token", "t"]);
        let error = run(&args, None, &|_| true).await.unwrap_err();
        assert!(format!("{error:#}").contains("only loopback"), "{error:#}");
    }
}
