//! Metric names and the few helpers that record them (Prometheus via the `metrics` facade).

use std::time::Duration;

/// Reminders published (a re-publish after a crash counts again).
pub const REMINDERS_PUBLISHED: &str = "reminders_published_total";
/// Wall time of one scan, seconds.
pub const SCAN_DURATION: &str = "reminder_scan_duration_seconds";
/// 1 while this replica holds the scanner lease.
pub const LEASE_HELD: &str = "reminder_lease_held";
/// Open tasks with a due date in this service's projection (read from the shard counters by
/// the lease holder at each scan).
pub const TRACKED_TASKS: &str = "reminder_tracked_tasks";
/// Task events handled, by topic and result (`applied`, `stale`, `duplicate`, `failed`).
pub const EVENTS: &str = "reminder_task_events_total";
/// Task events acknowledged without effect, by topic and reason (`forbidden_publisher`).
pub const EVENTS_DROPPED: &str = "reminder_task_events_dropped_total";
/// Bucket entries a scan looked at.
pub const SCAN_CANDIDATES: &str = "reminder_scan_candidates_total";
/// How far the watermark trails the window's far edge after a scan, seconds: 0 (or one bucket)
/// normally; it grows while reminders cannot be published, and every scan reads that far back.
pub const SCAN_LAG: &str = "reminder_scan_lag_seconds";

pub fn published() {
    metrics::counter!(REMINDERS_PUBLISHED).increment(1);
}

pub fn scan_finished(took: Duration, candidates: usize) {
    metrics::histogram!(SCAN_DURATION).record(took.as_secs_f64());
    metrics::counter!(SCAN_CANDIDATES).increment(u64::try_from(candidates).unwrap_or(u64::MAX));
}

pub fn scan_lag(seconds: i64) {
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(SCAN_LAG).set(seconds.max(0) as f64);
}

pub fn lease_held(held: bool) {
    metrics::gauge!(LEASE_HELD).set(if held { 1.0 } else { 0.0 });
}

pub fn tracked_tasks(count: i64) {
    // Precision loss above 2^53 tasks is not a concern.
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(TRACKED_TASKS).set(count as f64);
}

pub fn event(topic: &'static str, result: &'static str) {
    metrics::counter!(EVENTS, "topic" => topic, "result" => result).increment(1);
}

pub fn dropped(topic: &'static str, reason: &'static str) {
    metrics::counter!(EVENTS_DROPPED, "topic" => topic, "reason" => reason).increment(1);
}
