//! The wait before each retry of one call, as dapr/kit `retry/retry.go NewBackOff` builds it
//! from cenkalti/backoff v4:
//!
//! * constant: `duration` every time, no jitter, no time limit;
//! * exponential: a base interval starting at 500 ms, x1.5 after every retry and capped at
//!   `maxInterval`; each wait is the base x uniform[0.5, 1.5] (`ExponentialBackOff.NextBackOff`),
//!   and the retries stop once the time since the first attempt plus the next wait would pass
//!   15 minutes, whatever `maxRetries` says;
//! * `maxRetries` N >= 0 allows N retries (`backoff.WithMaxRetries`); negative = no count limit.

use crate::policy::{RetryKind, RetryPolicy};
use rand::Rng;
use std::time::Duration;
use tokio::time::Instant;

/// First base interval of an exponential policy (dapr/kit `DefaultConfig`).
pub const EXPONENTIAL_INITIAL: Duration = Duration::from_millis(500);
/// Growth of the base interval per retry.
pub const MULTIPLIER: f64 = 1.5;
/// Jitter around the base interval: +-50 %.
pub const RANDOMIZATION: f64 = 0.5;
/// Exponential retries stop after this much time in total (`MaxElapsedTime`).
pub const MAX_ELAPSED: Duration = Duration::from_secs(15 * 60);

/// Backoff state of one call under one retry policy.
#[derive(Debug)]
pub struct Backoff<'p> {
    policy: &'p RetryPolicy,
    retries: u64,
    base: Duration,
    started: Instant,
}

impl<'p> Backoff<'p> {
    /// Starts the clock: the first attempt begins now.
    pub fn new(policy: &'p RetryPolicy) -> Self {
        Self {
            policy,
            retries: 0,
            base: EXPONENTIAL_INITIAL,
            started: Instant::now(),
        }
    }

    /// Retries made so far.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// The wait before the next retry, or `None` when the policy allows no more.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.next_delay_after(self.started.elapsed())
    }

    /// [`Self::next_delay`] when `elapsed` has passed since the first attempt.
    pub(crate) fn next_delay_after(&mut self, elapsed: Duration) -> Option<Duration> {
        if self
            .policy
            .max_retries
            .is_some_and(|max| self.retries >= max)
        {
            return None;
        }
        let delay = match self.policy.kind {
            RetryKind::Constant => self.policy.duration,
            RetryKind::Exponential => {
                let cap = self.policy.max_interval;
                let base = self.base.min(cap);
                let factor = rand::rng().random_range(1.0 - RANDOMIZATION..=1.0 + RANDOMIZATION);
                let wait = base.mul_f64(factor);
                self.base = if base.as_secs_f64() >= cap.as_secs_f64() / MULTIPLIER {
                    cap
                } else {
                    base.mul_f64(MULTIPLIER)
                };
                if elapsed + wait > MAX_ELAPSED {
                    return None;
                }
                wait
            }
        };
        self.retries += 1;
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn policy(kind: RetryKind, max_retries: Option<u64>) -> RetryPolicy {
        RetryPolicy {
            kind,
            duration: Duration::from_millis(10),
            max_interval: Duration::from_secs(2),
            max_retries,
            http_status_codes: None,
        }
    }

    #[test]
    fn constant_waits_the_duration_and_counts_retries() {
        let p = policy(RetryKind::Constant, Some(2));
        let mut b = Backoff::new(&p);
        assert_eq!(b.next_delay(), Some(Duration::from_millis(10)));
        assert_eq!(b.next_delay(), Some(Duration::from_millis(10)));
        assert_eq!(b.next_delay(), None);
        let zero = policy(RetryKind::Constant, Some(0));
        assert_eq!(
            Backoff::new(&zero).next_delay(),
            None,
            "maxRetries 0 = one attempt"
        );
    }

    #[test]
    fn exponential_grows_by_half_with_jitter_and_caps_the_base() {
        let p = policy(RetryKind::Exponential, None);
        let mut b = Backoff::new(&p);
        let delays: Vec<Duration> = (0..30).map(|_| b.next_delay().unwrap()).collect();
        assert!(delays[0] >= Duration::from_millis(250) && delays[0] <= Duration::from_millis(750));
        // Second base is 750 ms: waits in [375, 1125] ms.
        assert!(
            delays[1] >= Duration::from_millis(375) && delays[1] <= Duration::from_millis(1125)
        );
        // Capped base 2 s: waits within [1, 3] s, the jitter may pass maxInterval.
        assert!(
            delays[10..]
                .iter()
                .all(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(3))
        );
        assert!(
            delays.iter().any(|d| *d > Duration::from_secs(2)),
            "jitter goes above the cap"
        );
    }

    #[test]
    fn exponential_stops_after_fifteen_minutes_even_without_max_retries() {
        let p = policy(RetryKind::Exponential, None);
        let mut b = Backoff::new(&p);
        let mut total = Duration::ZERO;
        while let Some(d) = b.next_delay_after(total) {
            total += d;
            assert!(b.retries() < 10_000);
        }
        assert!(total <= MAX_ELAPSED, "{total:?}");
        assert!(total >= MAX_ELAPSED - Duration::from_secs(3), "{total:?}");
    }

    #[test]
    fn constant_has_no_time_limit() {
        let mut p = policy(RetryKind::Constant, None);
        p.duration = Duration::from_secs(60);
        let mut b = Backoff::new(&p);
        let mut total = Duration::ZERO;
        for _ in 0..30 {
            total += b.next_delay_after(total).unwrap();
        }
        assert_eq!(b.retries(), 30);
    }
}
