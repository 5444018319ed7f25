//! Latency percentiles.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` for no values.
    pub fn of(values: &[Duration]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[i.clamp(1, sorted.len()) - 1]
        };
        Some(Self {
            count: sorted.len(),
            p50_ms: round(rank(50.0)),
            p95_ms: round(rank(95.0)),
            p99_ms: round(rank(99.0)),
            max_ms: round(sorted[sorted.len() - 1]),
            mean_ms: round(sorted.iter().sum::<f64>() / sorted.len() as f64),
        })
    }
}

fn round(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(&values);
        assert_eq!(
            p.as_ref().map(|p| (p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms)),
            Some((50.0, 95.0, 99.0, 100.0))
        );
        assert_eq!(Percentiles::of(&[]), None);
    }
}
