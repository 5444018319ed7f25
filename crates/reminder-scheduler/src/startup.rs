//! Building and running the service: the HTTP side (subscriptions, health, metrics) and the
//! background loops, stopped together by one `service_kit::Shutdown`.

use std::sync::Arc;

use axum::Router;
use dapr_http::DaprClient;
use service_kit::{LayeredSettings as _, Service, Shutdown};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::buckets::Buckets;
use crate::clock::{Clock, SystemClock};
use crate::context::{AppState, Context};
use crate::error::Error;
use crate::handle::Handle;
use crate::lease::Lease;
use crate::policy::Policy;
use crate::settings::Settings;
use crate::store::Store;
use crate::{apply, background};

/// A built service, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    ctx: Arc<Context>,
}

/// What an embedder may replace: the clock due dates are compared with (tests move it by hand).
#[derive(Debug, Clone)]
pub struct Overrides {
    pub clock: Arc<dyn Clock>,
}

impl Default for Overrides {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
        }
    }
}

impl Service for Application {
    type Settings = Settings;
    type Error = Error;
    type Overrides = Overrides;
    type Handle = Handle;

    /// Validates the settings (tests change them after loading) and wires the replica.
    async fn build_with(
        settings: Settings,
        listener: TcpListener,
        overrides: Overrides,
    ) -> Result<Self, Error> {
        settings.validate()?;
        let common = &settings.common;
        let dapr = DaprClient::new(common.dapr.clone())?;
        let store = Store::new(dapr.clone(), common.state_store_name.clone());
        let replica_id = settings
            .replica_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(|| format!("{}-{}", common.app_id, uuid::Uuid::new_v4()));
        let lead = chrono::Duration::from_std(settings.reminder_lead_time).map_err(|_| {
            crate::settings::SettingsError::Invalid("REMINDER_LEAD_TIME is too large".into())
        })?;
        let ctx = Arc::new(Context {
            dapr: dapr.clone(),
            store: store.clone(),
            pubsub: common.pubsub_name.clone(),
            app_id: common.app_id.clone(),
            policy: Policy {
                lead,
                remind_overdue: settings.remind_overdue,
                buckets: Buckets::new(settings.bucket_width),
            },
            clock: overrides.clock,
            tombstone_ttl: settings.tombstone_ttl,
            scan_interval: settings.scan_interval,
            scan_lookback: settings.scan_lookback,
            lease_renew_interval: settings.lease_renew_interval,
            lease: Lease::new(store, replica_id, settings.lease_ttl),
            scan_now: Notify::new(),
            scans: watch::channel(0).0,
        });
        let router = app(Arc::clone(&ctx), &settings)?;
        tracing::info!(
            lead_time = %humantime::format_duration(settings.reminder_lead_time),
            scan_interval = %humantime::format_duration(settings.scan_interval),
            replica_id = ctx.lease.holder(),
            "reminder-scheduler ready"
        );
        Ok(Self {
            listener,
            router,
            ctx,
        })
    }

    fn handle(&self) -> Handle {
        Handle::new(Arc::clone(&self.ctx))
    }

    /// Serves and runs the loops until `shutdown`, then releases the lease. Both run in this one
    /// task, so aborting it stops the replica as a crash would.
    async fn run_until(self, shutdown: Shutdown) -> Result<(), Error> {
        let server = service_kit::serve(self.listener, self.router, &shutdown);
        let (served, ()) = tokio::join!(server, background::run(self.ctx, &shutdown));
        served.map_err(Error::Serve)
    }
}

/// The service's routes: subscriptions, `/healthz`, `/readyz`, `/metrics`.
pub fn app(state: AppState, settings: &Settings) -> Result<Router, Error> {
    let common = &settings.common;
    let subscriptions = apply::subscriptions(&common.pubsub_name, &common.app_id)
        .app_api_token(common.app_api_token.clone());
    let routes = subscriptions.router(Arc::clone(&state));
    Ok(service_kit::service_router(
        routes,
        common,
        state.dapr.clone(),
    )?)
}
