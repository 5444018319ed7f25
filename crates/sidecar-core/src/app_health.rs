//! App health checks, as daprd runs them with `--enable-app-health-check` (`pkg/apphealth/health.go`
//! and `HealthProbe` in `pkg/channel/http/http_channel.go`).
//!
//! The sidecar probes `GET <app><path>` every `interval`, with no headers of its own (no
//! `dapr-api-token`, no `dapr-app-id`); a 2xx answer within `timeout` is a success, anything else
//! a failure. The app starts out unhealthy and becomes healthy at the first success. It turns
//! unhealthy after `threshold` failures counted since it last became healthy: like daprd's
//! `doProbe`, which acts only on changes of status, a success while healthy does not reset the
//! count, so failures need not be consecutive. Each change is published on `state.app_healthy`;
//! [`crate::app_subscriptions`] stops and restarts the app's subscriptions on it, and service
//! invocation and deliveries refuse to call an unhealthy app. The settings are
//! [`crate::options::AppHealthOptions`].

use crate::options::AppHealthOptions;
use crate::sidecar::SidecarState;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Probes the app until the sidecar shuts down, publishing each change of health on
/// `state.app_healthy`; `first` fires once the first probe has been decided.
pub(crate) async fn run_probes(
    state: Arc<SidecarState>,
    options: AppHealthOptions,
    base: String,
    first: oneshot::Sender<()>,
) {
    let url = format!("{base}{}", options.path);
    let mut ticker = tokio::time::interval(options.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counter = FailureCounter::new(options.threshold);
    let mut first = Some(first);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = state.shutdown.cancelled() => return,
        }
        let outcome = match state.client.get(&url).timeout(options.timeout).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("answered {}", response.status())),
            Err(e) if e.is_timeout() => Err(format!("no answer within {:?}", options.timeout)),
            Err(e) => Err(e.to_string()),
        };
        match (counter.record(outcome.is_ok()), outcome) {
            (Some(true), _) => {
                tracing::info!(app_id = %state.app_id(), "app entered healthy status");
                state.app_healthy.send_replace(true);
            }
            (Some(false), Err(reason)) => {
                tracing::warn!(app_id = %state.app_id(), %url, %reason,
                    "app entered unhealthy status after {} failed health probes", options.threshold);
                state.app_healthy.send_replace(false);
            }
            (_, Err(reason)) => {
                tracing::debug!(app_id = %state.app_id(), %url, %reason, "app health probe failed");
            }
            (_, Ok(())) => {}
        }
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
    }
}

/// daprd's health state machine: healthy or not, and the failures since the last healthy
/// transition.
#[derive(Debug)]
struct FailureCounter {
    threshold: u32,
    healthy: bool,
    failures: u32,
}

impl FailureCounter {
    fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            healthy: false,
            failures: 0,
        }
    }

    /// Records one probe; `Some(new status)` when the status changed.
    fn record(&mut self, success: bool) -> Option<bool> {
        match (success, self.healthy) {
            (true, false) => {
                self.healthy = true;
                self.failures = 0;
                Some(true)
            }
            (false, true) => {
                self.failures = self.failures.saturating_add(1);
                (self.failures >= self.threshold).then(|| {
                    self.healthy = false;
                    false
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FailureCounter;

    #[test]
    fn the_app_starts_unhealthy_and_the_first_success_makes_it_healthy() {
        let mut c = FailureCounter::new(3);
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(true), Some(true));
        assert_eq!(c.record(true), None);
    }

    #[test]
    fn failures_count_since_the_last_healthy_transition_not_in_a_row() {
        let mut c = FailureCounter::new(3);
        assert_eq!(c.record(true), Some(true));
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(false), Some(false), "third failure since healthy");
        assert_eq!(c.record(false), None, "already unhealthy");
        assert_eq!(c.record(true), Some(true));
        assert_eq!(c.record(false), None, "the count starts again");
    }
}
