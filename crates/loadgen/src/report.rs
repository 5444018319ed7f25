//! The JSON result.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::audit::AuditLag;
use crate::cli::Args;
use crate::driver::Run;
use crate::memory::{ProcessMemory, RetainedMemory};
use crate::shares::Share;
use crate::stats::Percentiles;
use crate::store_usage::{FamilyUsage, StoreMemory};

/// Everything a run measured, as written to the result file.
#[derive(Debug, Serialize)]
pub struct Result {
    pub mode: String,
    /// What was sent: `create` (`POST /api/tasks`) or `get` (`--get`).
    pub target: String,
    /// Whether emails were expected (not with `--http-only` or `--get`).
    pub emails_expected: bool,
    /// What latencies count from: `sent`, or at a fixed rate `due` (the scheduled time).
    pub latency_from: String,
    pub concurrency: u32,
    pub rate: Option<f64>,
    pub duration_s: f64,
    /// Distinct users (tokens) the tasks were spread over.
    pub users: usize,
    pub requests: usize,
    pub errors: usize,
    pub error_kinds: BTreeMap<String, u64>,
    pub emails_matched: usize,
    pub emails_missing: usize,
    pub duplicate_emails: u64,
    pub unmatched_emails: u64,
    /// Requests per second over the sending time.
    pub requests_per_s: f64,
    /// Emails per second from the start to the last email.
    pub emails_per_s: f64,
    pub http_latency: Option<Percentiles>,
    pub e2e_latency: Option<Percentiles>,
    /// With `--run-log` naming a run with an audit-logger: how far it fell behind the creates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditLag>,
    pub peak_memory: Vec<ProcessMemory>,
    /// Per instance of each scaled app: its work and its share of the app's (`--run-log`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instance_shares: Vec<Share>,
    /// With `--settle`: resident memory before the run and after it settled, per process.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retained_memory: Vec<RetainedMemory>,
    /// With `--settle` and `--run-log`: what the in-memory state store still holds, by app and
    /// key family, largest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub store_usage: Vec<FamilyUsage>,
    /// With `--settle` and `--run-log`: the memory each in-memory state store holds its keys and
    /// values in, free space included.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub store_memory: Vec<StoreMemory>,
}

impl Result {
    pub fn new(
        args: &Args,
        run: &Run,
        peak_memory: Vec<ProcessMemory>,
        instance_shares: Vec<Share>,
    ) -> Self {
        let ok: Vec<_> = run.samples.iter().filter(|s| s.error.is_none()).collect();
        let http: Vec<Duration> = ok.iter().map(|s| s.http).collect();
        let e2e: Vec<Duration> = ok.iter().filter_map(|s| s.e2e).collect();
        let per_s = |n: usize, t: Duration| round(n as f64 / t.as_secs_f64().max(1e-9));
        Self {
            mode: if args.rate.is_some() {
                "rate"
            } else {
                "concurrency"
            }
            .into(),
            target: if args.get.is_some() { "get" } else { "create" }.into(),
            emails_expected: args.expects_emails(),
            latency_from: if args.rate.is_some() { "due" } else { "sent" }.into(),
            concurrency: args.concurrency,
            rate: args.rate,
            duration_s: args.duration.as_secs_f64(),
            users: if args.get.is_some() {
                0
            } else {
                args.token.len()
            },
            requests: run.samples.len(),
            errors: run.samples.len() - ok.len(),
            error_kinds: run.errors(),
            emails_matched: e2e.len(),
            emails_missing: if args.expects_emails() {
                ok.len() - e2e.len()
            } else {
                0
            },
            duplicate_emails: run.duplicate_emails,
            unmatched_emails: run.unmatched_emails,
            requests_per_s: per_s(run.samples.len(), run.send_time),
            emails_per_s: per_s(e2e.len(), run.total_time),
            http_latency: Percentiles::of(&http),
            e2e_latency: Percentiles::of(&e2e),
            audit: None,
            peak_memory,
            instance_shares,
            retained_memory: Vec::new(),
            store_usage: Vec::new(),
            store_memory: Vec::new(),
        }
    }

    /// Tasks the system acknowledged, so keeps.
    pub fn tasks_created(&self) -> usize {
        self.requests - self.errors
    }

    /// A few human-readable lines.
    pub fn summary(&self) -> String {
        let line = |name: &str, p: &Option<Percentiles>| match p {
            Some(p) => format!(
                "{name}: p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n={})",
                p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms, p.count
            ),
            None => format!("{name}: no samples"),
        };
        let memory: Vec<String> = self
            .peak_memory
            .iter()
            .map(|p| format!("{} {:.1} MiB", p.name, p.vm_hwm_kib as f64 / 1024.0))
            .collect();
        let shares: String = self
            .instance_shares
            .iter()
            .map(|s| {
                format!(
                    "\n  {}: {} {} ({:.0}%)",
                    s.instance,
                    s.count,
                    s.work,
                    s.share * 100.0
                )
            })
            .collect();
        let shares = if shares.is_empty() {
            shares
        } else {
            format!("\nwork per instance:{shares}")
        };
        let retained: String = self
            .retained_memory
            .iter()
            .map(|r| {
                format!(
                    "\nafter settling: {} {:.1} -> {:.1} MiB, {:.0} bytes per task",
                    r.name,
                    r.rss_before_kib as f64 / 1024.0,
                    r.rss_after_kib as f64 / 1024.0,
                    r.bytes_per_task
                )
            })
            .collect();
        let stored: f64 = self.store_usage.iter().map(|f| f.bytes_per_task).sum();
        let families: String = self
            .store_usage
            .iter()
            .map(|f| {
                format!(
                    "\n  {} {}: {} keys, {:.0} bytes per task",
                    f.app_id, f.family, f.keys, f.bytes_per_task
                )
            })
            .collect();
        let families = if families.is_empty() {
            families
        } else {
            format!("\nstate store after settling: {stored:.0} bytes per task{families}")
        };
        let families: String = std::iter::once(families)
            .chain(self.store_memory.iter().map(|s| {
                format!(
                    "\nstate store {} memory (free space included): {:.0} bytes per task",
                    s.store, s.bytes_per_task
                )
            }))
            .collect();
        let audit = match &self.audit {
            Some(a) => format!(
                "\naudit entries {} ({:.1}/s), backlog when sending stopped {}, largest {}, missing {}, lag p50 {} p99 {} ms (to within {} ms)",
                a.entries,
                a.entries_per_s,
                a.backlog_at_end_of_sending,
                a.max_backlog,
                a.missing,
                a.lag.as_ref().map_or("-".into(), |p| p.p50_ms.to_string()),
                a.lag.as_ref().map_or("-".into(), |p| p.p99_ms.to_string()),
                a.poll_interval_ms
            ),
            None => String::new(),
        };
        format!(
            "requests {} ({:.1}/s), errors {}, emails {} ({:.1}/s), missing {}\n{}\n{}{}\npeak memory (VmHWM): {}{}{}{}",
            self.requests,
            self.requests_per_s,
            self.errors,
            self.emails_matched,
            self.emails_per_s,
            self.emails_missing,
            line("HTTP latency", &self.http_latency),
            line(
                "end-to-end latency (request -> email accepted)",
                &self.e2e_latency
            ),
            audit,
            memory.join(", "),
            shares,
            retained,
            families
        )
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn write(result: &Result, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(result)? + "\n")?;
    Ok(())
}
