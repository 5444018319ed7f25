//! The two loops every replica runs next to its HTTP server: the lease loop (acquire or renew
//! every `LEASE_RENEW_INTERVAL`) and the scan loop (scan every `SCAN_INTERVAL`, or at once when
//! woken, while holding the lease). Both stop when the shutdown token fires; the lease is then
//! released so another replica takes over without waiting for the TTL.

use std::sync::Arc;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::Error;
use crate::lease::LeaseState;
use crate::{metrics, scanner};

/// Runs both loops until `stop` fires, then releases the lease.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    tokio::join!(lease_loop(&ctx, &stop), scan_loop(&ctx, &stop));
    if let Err(error) = ctx.lease.release().await {
        tracing::warn!(%error, "could not release the scanner lease; it expires on its own");
    }
    metrics::lease_held(false);
}

async fn lease_loop(ctx: &Context, stop: &CancellationToken) {
    let mut tick = tokio::time::interval(ctx.lease_renew_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut held = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
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
            }
            Err(error) => {
                tracing::warn!(%error, "scanner lease not renewed; retrying");
                held = ctx.lease.is_held();
            }
        }
        metrics::lease_held(held);
    }
}

async fn scan_loop(ctx: &Context, stop: &CancellationToken) {
    let mut tick = tokio::time::interval(ctx.scan_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
            () = ctx.scan_now.notified() => {}
        }
        if !ctx.lease.is_held() {
            continue;
        }
        match scanner::scan(ctx).await {
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
