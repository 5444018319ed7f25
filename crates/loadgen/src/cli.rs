//! Command-line options.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Creates tasks over the REST API for a bounded time, at a fixed concurrency or a fixed rate,
/// and measures HTTP latency and end-to-end latency (request sent -> email accepted by the SMTP
/// sink this process runs; point the email-worker's SMTP_URL at --smtp-listen). At a fixed rate
/// both latencies count from when a request was due, not from when it went out, so a server
/// that falls behind shows as latency instead of as a slower schedule.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// task-api base URL (loopback only: this is a load tool for the local system);
    /// comma-separated for several task-api instances, which requests take in turn.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    pub url: Vec<String>,
    /// Bearer tokens for task-api (`task-api token ...`), comma-separated; requests take them in
    /// turn, so several tokens spread the tasks over several users.
    #[arg(
        long,
        env = "LOADGEN_TOKEN",
        hide_env_values = true,
        value_delimiter = ',',
        required_unless_present = "get"
    )]
    pub token: Vec<String>,
    /// Instead of creating tasks, GET this loopback URL (e.g. a sidecar's state API); implies
    /// --http-only, takes no token.
    #[arg(long, value_name = "URL")]
    pub get: Option<String>,
    /// Measure HTTP only: no SMTP sink, no emails expected (a service on its own, a baseline).
    #[arg(long)]
    pub http_only: bool,
    /// Stop after this many requests (or at --duration, whichever comes first).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// How long to send requests.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Requests in flight at once (with --rate: the most in flight).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Requests per second at a fixed rate instead of closed-loop concurrency.
    #[arg(long)]
    pub rate: Option<f64>,
    /// After the last request, how long to wait for the remaining emails (and, with --run-log,
    /// for the audit-logger to record every create).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// After the drain, how long to wait before reading each process's resident memory again
    /// (e.g. until the state store's TTLs have passed), to report what the run left behind per
    /// task. 0 skips it.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Per-request HTTP timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Address of the SMTP sink.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub smtp_listen: SocketAddr,
    /// Executable names whose peak memory (VmHWM) is reported.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sidecar,task-api,email-worker,reminder-scheduler,audit-logger"
    )]
    pub processes: Vec<String>,
    /// Only count processes whose executable is in this folder (e.g. target/release).
    #[arg(long)]
    pub process_dir: Option<PathBuf>,
    /// JSON result file.
    #[arg(long, default_value = "docs/load/result.json")]
    pub out: PathBuf,
    /// Output of the `sidecar run` that hosts the system: its table of instances gives each
    /// instance of a scaled app, whose share of the work is read from its /metrics and reported,
    /// and the audit-logger instances, whose entries are counted during the run (audit lag).
    #[arg(long, value_name = "FILE")]
    pub run_log: Option<PathBuf>,
    /// SVG latency plot.
    #[arg(long, default_value = "docs/load/latency.svg")]
    pub plot: PathBuf,
}

impl Args {
    /// Whether emails are expected at the sink.
    pub fn expects_emails(&self) -> bool {
        !self.http_only && self.get.is_none()
    }
}
