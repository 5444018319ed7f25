//! Whether the audit-logger keeps up: during the run, each audit-logger instance's
//! `audit_entries_total` for `task-created` events on task trails (one entry per create) is read
//! from its `/metrics` every [`POLL`], and compared afterwards with when each create was
//! acknowledged: entries per second, the backlog (creates acknowledged but not yet recorded) and
//! each create's lag until the count covered it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::driver::{Run, Sample};
use crate::shares::Instance;
use crate::stats::Percentiles;

/// How often the counters are read; each create's lag is known to within this.
pub const POLL: Duration = Duration::from_millis(100);

/// The series counted: one per create (its task trail), none for the user trails.
const METRIC: &str = "audit_entries_total";
const LABELS: [(&str, &str); 2] = [("topic", "task-created"), ("trail", "task")];

/// Sum of the series of counter `name` whose labels include every one of `labels`.
pub fn labelled_counter(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (set, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once('}')?,
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            labels
                .iter()
                .all(|(k, v)| set.split(',').any(|l| l == format!("{k}=\"{v}\"")))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .fold(0.0, |a, b| a + b)
}

/// Reads the audit-logger instances' counters in the background while the load runs.
#[derive(Debug)]
pub struct AuditWatch {
    /// (when, entries since the run began), in reading order.
    readings: Arc<Mutex<Vec<(Instant, f64)>>>,
    poller: tokio::task::JoinHandle<()>,
}

impl AuditWatch {
    /// Starts reading the counters of `instances`' audit-logger apps; `None` when there is none.
    pub async fn start(
        client: &reqwest::Client,
        instances: &[Instance],
    ) -> anyhow::Result<Option<Self>> {
        let urls: Vec<String> = instances
            .iter()
            .filter(|i| i.app_id == "audit-logger")
            .map(|i| format!("http://127.0.0.1:{}/metrics", i.app_port))
            .collect();
        if urls.is_empty() {
            return Ok(None);
        }
        let baseline = read(client, &urls).await?;
        let readings = Arc::new(Mutex::new(Vec::new()));
        let poller = {
            let (client, readings) = (client.clone(), Arc::clone(&readings));
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(POLL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    // A failed read is a gap in the record, not a zero.
                    if let Ok(count) = read(&client, &urls).await {
                        readings
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((Instant::now(), count - baseline));
                    }
                }
            })
        };
        Ok(Some(Self { readings, poller }))
    }

    /// Entries recorded since the run began, as last read.
    pub fn recorded(&self) -> f64 {
        self.lock().last().map_or(0.0, |r| r.1)
    }

    /// Stops reading and works out what the readings say about `run`'s creates.
    pub fn finish(self, run: &Run) -> AuditLag {
        self.poller.abort();
        let readings: Vec<(Duration, f64)> = self
            .lock()
            .iter()
            .map(|(at, count)| (at.saturating_duration_since(run.start), *count))
            .collect();
        summarise(&readings, &run.samples, run.send_time)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, f64)>> {
        self.readings.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the audit counters showed, in the result file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditLag {
    /// Entries recorded for the run's creates.
    pub entries: f64,
    /// Entries per second from the start until the count last grew.
    pub entries_per_s: f64,
    /// Creates acknowledged but not yet recorded, when sending stopped.
    pub backlog_at_end_of_sending: f64,
    /// The largest backlog seen at any reading.
    pub max_backlog: f64,
    /// Acknowledged creates the count never covered before the drain ended.
    pub missing: f64,
    /// Per create: its acknowledgement -> the first reading that covered it (in acknowledgement
    /// order), to within the poll interval.
    pub lag: Option<Percentiles>,
    pub poll_interval_ms: f64,
}

/// The figures from `readings` (time, entries) and the creates' acknowledgement times.
fn summarise(readings: &[(Duration, f64)], samples: &[Sample], send_time: Duration) -> AuditLag {
    let mut acks: Vec<Duration> = samples
        .iter()
        .filter(|s| s.error.is_none())
        .map(|s| s.sent_at + s.http)
        .collect();
    acks.sort();
    let entries = readings.iter().map(|r| r.1).fold(0.0, f64::max);
    let grew_until = readings
        .iter()
        .find(|r| r.1 >= entries)
        .map_or(send_time, |r| r.0)
        .max(send_time);
    let acked_by = |t: Duration| acks.partition_point(|a| *a <= t) as f64;
    let backlog_at_end_of_sending = readings
        .iter()
        .find(|r| r.0 >= send_time)
        .map_or(acks.len() as f64, |r| (acks.len() as f64 - r.1).max(0.0));
    let max_backlog = readings
        .iter()
        .map(|r| (acked_by(r.0) - r.1).max(0.0))
        .fold(0.0, f64::max);
    // The k-th acknowledged create is covered by the first reading that counts k entries.
    let mut lags = Vec::with_capacity(acks.len());
    let mut next = 0;
    for (k, ack) in acks.iter().enumerate() {
        while next < readings.len() && readings[next].1 < (k + 1) as f64 {
            next += 1;
        }
        let Some(reading) = readings.get(next) else {
            break;
        };
        lags.push(reading.0.saturating_sub(*ack));
    }
    AuditLag {
        entries,
        entries_per_s: round(entries / grew_until.as_secs_f64().max(1e-9)),
        backlog_at_end_of_sending,
        max_backlog,
        missing: (acks.len() as f64 - entries).max(0.0),
        lag: Percentiles::of(&lags),
        poll_interval_ms: POLL.as_secs_f64() * 1e3,
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The sum of the counted series over every instance.
async fn read(client: &reqwest::Client, urls: &[String]) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for url in urls {
        let page = client
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| anyhow::anyhow!("audit-logger metrics {url}: {e}"))?
            .text()
            .await?;
        total += labelled_counter(&page, METRIC, &LABELS);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_series_with_every_label_count() {
        let page = "\
# TYPE audit_entries_total counter
audit_entries_total{topic=\"task-created\",trail=\"task\"} 7
audit_entries_total{trail=\"task\",topic=\"task-created\",x=\"y\"} 3
audit_entries_total{topic=\"task-created\",trail=\"user\"} 100
audit_entries_total{topic=\"task-created-late\",trail=\"task\"} 1000
audit_entries_total_other{topic=\"task-created\",trail=\"task\"} 5
";
        assert_eq!(labelled_counter(page, METRIC, &LABELS), 10.0);
        assert_eq!(labelled_counter(page, METRIC, &[]), 1110.0);
        assert_eq!(labelled_counter("", METRIC, &LABELS), 0.0);
    }

    fn acked(at_ms: u64) -> Sample {
        let sent = Instant::now();
        Sample {
            seq: at_ms,
            sent_at: Duration::from_millis(at_ms),
            sent,
            http: Duration::ZERO,
            error: None,
            e2e: None,
        }
    }

    #[test]
    fn lag_backlog_and_rate_follow_the_readings() {
        let ms = Duration::from_millis;
        // Four creates acknowledged at 0, 100, 200, 300 ms; sending stopped at 300 ms.
        let samples: Vec<Sample> = [0, 100, 200, 300].into_iter().map(acked).collect();
        // The count: 1 at 100 ms, 1 at 200 ms, 3 at 400 ms, 4 at 800 ms.
        let readings = [
            (ms(100), 1.0),
            (ms(200), 1.0),
            (ms(400), 3.0),
            (ms(800), 4.0),
        ];
        let lag = summarise(&readings, &samples, ms(300));
        assert_eq!(lag.entries, 4.0);
        assert_eq!(lag.entries_per_s, 5.0); // 4 entries by 800 ms
        assert_eq!(lag.backlog_at_end_of_sending, 1.0); // the reading at 400 ms: 4 - 3
        assert_eq!(lag.max_backlog, 2.0); // at 200 ms: 3 acknowledged, 1 recorded
        assert_eq!(lag.missing, 0.0);
        // Lags: 100 (0 -> 100), 300 (100 -> 400), 200 (200 -> 400), 500 (300 -> 800) ms.
        let p = lag.lag.unwrap();
        assert_eq!((p.count, p.p50_ms, p.max_ms), (4, 200.0, 500.0));
    }

    #[test]
    fn creates_never_recorded_are_missing_and_have_no_lag() {
        let ms = Duration::from_millis;
        let samples: Vec<Sample> = [0, 10, 20].into_iter().map(acked).collect();
        let lag = summarise(&[(ms(100), 1.0)], &samples, ms(20));
        assert_eq!(lag.missing, 2.0);
        assert_eq!(lag.lag.map(|p| p.count), Some(1));
    }
}
