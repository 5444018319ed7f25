//! App health checks, as daprd runs them with `--enable-app-health-check`.
//!
//! The sidecar probes `GET <app><path>` every `interval`; a 2xx answer within `timeout` is a
//! success, anything else a failure. The app starts out unhealthy and becomes healthy at the first
//! success; it turns unhealthy again after `threshold` failures in a row. While it is unhealthy
//! the sidecar takes no new work for it: no message is delivered (they wait in the broker, as
//! they do when daprd unsubscribes) and service invocation of it fails with `ERR_DIRECT_INVOKE`
//! ("app is not in a healthy state") without reaching it. The settings are
//! [`crate::options::AppHealthOptions`].

use crate::options::AppHealthOptions;
use crate::sidecar::SidecarState;
use std::sync::Arc;

/// Probes the app until the sidecar shuts down, publishing each change of health on
/// `state.app_healthy`.
pub(crate) async fn run_probes(state: Arc<SidecarState>, options: AppHealthOptions, base: String) {
    let url = format!("{base}{}", options.path);
    let mut ticker = tokio::time::interval(options.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Unhealthy until proven otherwise: the count starts at the threshold.
    let mut failures = options.threshold;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = state.shutdown.cancelled() => return,
        }
        let mut probe = state.client.get(&url).timeout(options.timeout);
        if let Some(token) = &state.opts.app_api_token {
            probe = probe.header(crate::tokens::TOKEN_HEADER, token);
        }
        let outcome = match probe.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("answered {}", response.status())),
            Err(e) if e.is_timeout() => Err(format!("no answer within {:?}", options.timeout)),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                if failures >= options.threshold {
                    tracing::info!(app_id = %state.app_id(), "app entered healthy status");
                    state.app_healthy.send_replace(true);
                }
                failures = 0;
            }
            Err(reason) => {
                failures = failures.saturating_add(1);
                if failures == options.threshold {
                    tracing::warn!(app_id = %state.app_id(), %url, %reason,
                        "app entered unhealthy status after {failures} failed health probes");
                    state.app_healthy.send_replace(false);
                } else {
                    tracing::debug!(app_id = %state.app_id(), %url, %reason, "app health probe failed");
                }
            }
        }
    }
}
