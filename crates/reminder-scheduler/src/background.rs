//! The two loops every replica runs next to its HTTP server: the lease loop (acquire or renew
//! every `LEASE_RENEW_INTERVAL`) and the scan loop (scan every `SCAN_INTERVAL`, or at once when
//! woken, while holding the lease). Both stop when the service's shutdown is triggered; the lease
//! is then released so another replica takes over without waiting for the TTL.

use std::sync::Arc;

use std::time::Duration;

use chrono::Utc;
use service_kit::Shutdown;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument as _;

use crate::context::Context;
use crate::error::Error;
use crate::lease::LeaseState;
use crate::{metrics, scanner};

/// Runs both loops until `stop` is triggered, then releases the lease.
pub async fn run(ctx: Arc<Context>, stop: &Shutdown) {
    tokio::join!(lease_loop(&ctx, stop), scan_loop(&ctx, stop));
    if let Err(error) = ctx.lease.release().await {
        tracing::warn!(%error, "could not release the scanner lease; it expires on its own");
    }
    metrics::lease_held(false);
}

async fn lease_loop(ctx: &Context, stop: &Shutdown) {
    let mut next = Instant::now();
    let mut held = false;
    loop {
        tokio::select! {
            () = stop.triggered() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        next = Instant::now() + ctx.lease_renew_interval;
        match ctx.lease.acquire_or_renew().await {
            Ok(LeaseState::Held) => {
                if !held {
                    tracing::info!(holder = ctx.lease.holder(), "scanner lease acquired");
                    ctx.scan_now.notify_one();
                }
                held = true;
            }
            Ok(LeaseState::HeldElsewhere) => {
                if held {
                    tracing::warn!(holder = ctx.lease.holder(), "scanner lease lost");
                }
                held = false;
                if let Some(at) = takeover_attempt(ctx) {
                    next = next.min(at);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "scanner lease not renewed; retrying");
                held = ctx.lease.is_held();
            }
        }
        metrics::lease_held(held);
    }
}

/// When a waiting replica should next try to take the lease: just after the holder's key is
/// due to expire if it stopped renewing, and then often while that moment is recent, so a
/// crashed holder is replaced about one TTL after its last renewal rather than up to a renewal
/// interval later.
fn takeover_attempt(ctx: &Context) -> Option<Instant> {
    const MARGIN: Duration = Duration::from_millis(50);
    let expiry = ctx.lease.expected_expiry()?;
    let now = Utc::now();
    match (expiry - now).to_std() {
        Ok(until) => Some(Instant::now() + until + MARGIN),
        // Expected already; keep trying briefly at a quick pace.
        Err(_) if now - expiry < chrono::Duration::from_std(ctx.lease_renew_interval).ok()? => {
            Some(Instant::now() + MARGIN)
        }
        Err(_) => None,
    }
}

async fn scan_loop(ctx: &Context, stop: &Shutdown) {
    let mut tick = tokio::time::interval(ctx.scan_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.triggered() => return,
            _ = tick.tick() => {}
            () = ctx.scan_now.notified() => {}
        }
        if !ctx.lease.is_held() {
            continue;
        }
        match traced_scan(ctx).await {
            Ok(report) => {
                if report.published > 0 || report.dropped > 0 {
                    tracing::info!(?report, "scan finished");
                } else {
                    tracing::debug!(?report, "scan finished");
                }
                ctx.scans.send_modify(|n| *n += 1);
            }
            Err(Error::LeaseLost) => {
                tracing::warn!("scan stopped: the scanner lease was lost");
                ctx.lease.abandon();
            }
            Err(error) => tracing::warn!(%error, "scan failed; retrying at the next tick"),
        }
    }
}

/// One scan, in a root span of its own when traces are exported (each reminder it publishes is
/// a span of its task's trace, linked to this one).
async fn traced_scan(ctx: &Context) -> Result<scanner::ScanReport, Error> {
    // A trace of its own, sampled like any new trace.
    let span = dapr_http::spans::traced_from(None, || {
        tracing::info_span!(
            parent: None,
            "scan",
            otel.name = "reminder scan",
            reminders.published = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        )
    });
    let Some(span) = span else {
        return scanner::scan(ctx).await;
    };
    let scanned = scanner::scan(ctx).instrument(span.clone()).await;
    match &scanned {
        Ok(report) => {
            span.record("reminders.published", report.published);
        }
        Err(error) => dapr_http::spans::fail(&span, error),
    }
    scanned
}
