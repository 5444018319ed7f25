//! Inbound resiliency for deliveries: which retry policy applies, and its backoff.
//!
//! Resolution follows daprd: the pub/sub's `targets.components.<name>.inbound.retry`, else the
//! named defaults `DefaultPubsubComponentInboundRetryPolicy`, `DefaultComponentInboundRetryPolicy`,
//! `DefaultComponentRetryPolicy`, `DefaultRetryPolicy`. Without any policy daprd makes no retries
//! of its own: a failure goes to the dead-letter topic, or back to the component.

use crate::resources::{ResiliencySpec, RetryKind, RetryPolicySpec};
use rand::Rng;
use std::time::Duration;

/// First interval of an exponential policy (dapr/kit default).
pub const EXPONENTIAL_INITIAL: Duration = Duration::from_millis(500);
const MULTIPLIER: f64 = 1.5;
const RANDOMIZATION: f64 = 0.5;

const DEFAULT_NAMES: &[&str] = &[
    "DefaultPubsubComponentInboundRetryPolicy",
    "DefaultComponentInboundRetryPolicy",
    "DefaultComponentRetryPolicy",
    "DefaultRetryPolicy",
];

/// The inbound retry policy for deliveries from `pubsub` to `app_id`.
pub fn inbound_policy(
    resiliencies: &[ResiliencySpec],
    app_id: &str,
    pubsub: &str,
) -> Option<RetryPolicySpec> {
    let scoped: Vec<&ResiliencySpec> = resiliencies.iter().filter(|r| r.in_scope(app_id)).collect();
    for r in &scoped {
        if let Some(policy) = r
            .component_inbound_retry
            .get(pubsub)
            .and_then(|name| r.retries.get(name))
        {
            return Some(policy.clone());
        }
    }
    DEFAULT_NAMES
        .iter()
        .find_map(|name| scoped.iter().find_map(|r| r.retries.get(*name).cloned()))
}

/// Timeout of each delivery attempt from `pubsub` to `app_id`
/// (`targets.components.<pubsub>.inbound.timeout`, else a `DefaultTimeoutPolicy`-style default).
pub fn inbound_timeout(
    resiliencies: &[ResiliencySpec],
    app_id: &str,
    pubsub: &str,
) -> Option<Duration> {
    let scoped: Vec<&ResiliencySpec> = resiliencies.iter().filter(|r| r.in_scope(app_id)).collect();
    if let Some(d) = scoped
        .iter()
        .find_map(|r| r.component_inbound_timeout.get(pubsub).copied())
    {
        return Some(d);
    }
    [
        "DefaultPubsubComponentInboundTimeoutPolicy",
        "DefaultComponentInboundTimeoutPolicy",
        "DefaultComponentTimeoutPolicy",
        "DefaultTimeoutPolicy",
    ]
    .iter()
    .find_map(|name| scoped.iter().find_map(|r| r.timeouts.get(*name).copied()))
}

/// Backoff state of one message under one policy.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicySpec,
    retries: u64,
    current: Duration,
}

impl Backoff {
    pub fn new(policy: RetryPolicySpec) -> Self {
        Self {
            policy,
            retries: 0,
            current: EXPONENTIAL_INITIAL,
        }
    }

    /// Whether a failure with this HTTP status may be retried (`matching.httpStatusCodes`).
    pub fn retriable(&self, status: Option<u16>) -> bool {
        match (&self.policy.http_status_codes, status) {
            (Some(ranges), Some(s)) => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s)),
            _ => true,
        }
    }

    /// Delay before the next retry, or `None` when the policy is exhausted.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self
            .policy
            .max_retries
            .is_some_and(|max| self.retries >= max)
        {
            return None;
        }
        self.retries += 1;
        Some(match self.policy.kind {
            RetryKind::Constant => self.policy.duration,
            RetryKind::Exponential => {
                let base = self.current.min(self.policy.max_interval);
                let jitter = rand::rng().random_range(1.0 - RANDOMIZATION..=1.0 + RANDOMIZATION);
                let scale = |d: Duration, f: f64| {
                    Duration::try_from_secs_f64(d.as_secs_f64() * f)
                        .unwrap_or(self.policy.max_interval)
                        .min(self.policy.max_interval)
                };
                let delay = scale(base, jitter);
                self.current = scale(base, MULTIPLIER);
                delay
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::resources::Resources;
    use std::path::Path;

    const YAML: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: { name: r }
scopes: [email-worker]
spec:
  policies:
    retries:
      fast: { policy: constant, duration: 10ms, maxRetries: 2 }
      expo: { policy: exponential, maxInterval: 2s, maxRetries: -1, matching: { httpStatusCodes: "429,500-599" } }
      DefaultRetryPolicy: { policy: constant, duration: 1s, maxRetries: 1 }
  targets:
    components:
      todo-pubsub: { inbound: { retry: fast } }
      other: { inbound: { retry: expo } }
"#;

    #[test]
    fn inbound_timeouts_resolve_by_name_or_literal() {
        let yaml = r#"
kind: Resiliency
metadata: { name: t }
spec:
  policies:
    timeouts: { short: 250ms }
  targets:
    components:
      a: { inbound: { timeout: short } }
      b: { inbound: { timeout: 2s } }
"#;
        let res = Resources::from_yaml(Path::new("t.yaml"), yaml).unwrap();
        let t = |p| inbound_timeout(&res.resiliencies, "x", p);
        assert_eq!(t("a"), Some(Duration::from_millis(250)));
        assert_eq!(t("b"), Some(Duration::from_secs(2)));
        assert_eq!(t("c"), None);
    }

    #[test]
    fn policies_resolve_by_target_then_defaults_and_scope() {
        let res = Resources::from_yaml(Path::new("r.yaml"), YAML).unwrap();
        let p = inbound_policy(&res.resiliencies, "email-worker", "todo-pubsub").unwrap();
        assert_eq!(p.max_retries, Some(2));
        let d = inbound_policy(&res.resiliencies, "email-worker", "unknown").unwrap();
        assert_eq!(d.duration, Duration::from_secs(1));
        assert!(inbound_policy(&res.resiliencies, "task-api", "todo-pubsub").is_none());
    }

    #[test]
    fn constant_policy_stops_after_max_retries() {
        let res = Resources::from_yaml(Path::new("r.yaml"), YAML).unwrap();
        let p = inbound_policy(&res.resiliencies, "email-worker", "todo-pubsub").unwrap();
        let mut b = Backoff::new(p);
        assert_eq!(b.next_delay(), Some(Duration::from_millis(10)));
        assert_eq!(b.next_delay(), Some(Duration::from_millis(10)));
        assert_eq!(b.next_delay(), None);
    }

    #[test]
    fn exponential_policy_grows_within_the_cap_and_matches_statuses() {
        let res = Resources::from_yaml(Path::new("r.yaml"), YAML).unwrap();
        let p = inbound_policy(&res.resiliencies, "email-worker", "other").unwrap();
        let mut b = Backoff::new(p);
        assert!(b.retriable(Some(503)) && b.retriable(Some(429)) && b.retriable(None));
        assert!(!b.retriable(Some(400)));
        let delays: Vec<Duration> = (0..20).map(|_| b.next_delay().unwrap()).collect();
        assert!(delays[0] >= Duration::from_millis(250) && delays[0] <= Duration::from_millis(750));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[19] >= Duration::from_secs(1));
    }
}
