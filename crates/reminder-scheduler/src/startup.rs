//! Building and running the service: the HTTP side (subscriptions, health, metrics) and the
//! background loops, stopped together by SIGTERM/Ctrl-C or a [`Handle`].

use std::sync::Arc;

use axum::Router;
use dapr_http::{DaprClient, DaprSettings};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::buckets::Buckets;
use crate::clock::{Clock, SystemClock};
use crate::context::{AppState, Context};
use crate::error::Error;
use crate::lease::Lease;
use crate::policy::Policy;
use crate::settings::Settings;
use crate::store::Store;
use crate::{apply, background};
use service_kit::LayeredSettings as _;

/// A built service, listening but not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: Router,
    ctx: Arc<Context>,
    stop: CancellationToken,
}

/// Lets a caller (tests, an embedding process) observe and stop a running application.
#[derive(Debug, Clone)]
pub struct Handle {
    ctx: Arc<Context>,
    stop: CancellationToken,
}

impl Handle {
    /// Whether this replica currently holds the scanner lease.
    pub fn holds_lease(&self) -> bool {
        self.ctx.lease.is_held()
    }

    /// This replica's lease holder id.
    pub fn replica_id(&self) -> &str {
        self.ctx.lease.holder()
    }

    /// Scans completed by this replica so far; `changed()` fires after each one.
    pub fn scans(&self) -> watch::Receiver<u64> {
        self.ctx.scans.subscribe()
    }

    /// Asks for a scan now instead of at the next tick.
    pub fn scan_now(&self) {
        self.ctx.scan_now.notify_one();
    }

    /// Stops the application gracefully (the lease is released).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Drops the lease locally without releasing it in the store, as a crashed replica would.
    pub fn abandon_lease(&self) {
        self.ctx.lease.abandon();
    }
}

impl Application {
    /// Binds `APP_HOST:APP_PORT` and connects to the sidecar named by the environment.
    pub async fn build(settings: Settings) -> Result<Self, Error> {
        let address = format!("{}:{}", settings.app_host, settings.app_port);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| Error::Bind { address, source })?;
        let dapr = DaprSettings::from_env().map_err(dapr_http::DaprError::from)?;
        Self::build_with(settings, dapr, Arc::new(SystemClock), listener)
    }

    /// Builds on an already bound listener, with explicit sidecar settings and clock (tests bind
    /// the app first because its sidecar needs the app's port).
    pub fn build_with(
        settings: Settings,
        dapr_settings: DaprSettings,
        clock: Arc<dyn Clock>,
        listener: TcpListener,
    ) -> Result<Self, Error> {
        settings.validate()?;
        let port = listener
            .local_addr()
            .map_err(|source| Error::Bind {
                address: "listener".into(),
                source,
            })?
            .port();
        let dapr = DaprClient::new(dapr_settings)?;
        let store = Store::new(dapr.clone(), settings.state_store_name.clone());
        let replica_id = settings
            .replica_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(|| format!("{}-{}", settings.app_id, uuid::Uuid::new_v4()));
        let lead = chrono::Duration::from_std(settings.reminder_lead_time).map_err(|_| {
            crate::settings::SettingsError::Invalid("REMINDER_LEAD_TIME is too large".into())
        })?;
        let ctx = Arc::new(Context {
            dapr: dapr.clone(),
            store: store.clone(),
            pubsub: settings.pubsub_name.clone(),
            app_id: settings.app_id.clone(),
            policy: Policy {
                lead,
                remind_overdue: settings.remind_overdue,
                buckets: Buckets::new(settings.bucket_width),
            },
            clock,
            tombstone_ttl: settings.tombstone_ttl,
            scan_interval: settings.scan_interval,
            scan_lookback: settings.scan_lookback,
            lease_renew_interval: settings.lease_renew_interval,
            lease: Lease::new(store, replica_id, settings.lease_ttl),
            scan_now: Notify::new(),
            scans: watch::channel(0).0,
        });
        let router = app(Arc::clone(&ctx), &settings)?;
        Ok(Self {
            listener,
            port,
            router,
            ctx,
            stop: CancellationToken::new(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> Handle {
        Handle {
            ctx: Arc::clone(&self.ctx),
            stop: self.stop.clone(),
        }
    }

    /// Serves until SIGTERM/Ctrl-C or [`Handle::stop`], then stops the loops and releases the
    /// lease.
    pub async fn run_until_stopped(self) -> Result<(), Error> {
        let stop = self.stop.clone();
        let signal_stop = stop.clone();
        let stop_after_serve = stop.clone();
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            tokio::select! {
                () = service_kit::shutdown_signal() => {}
                () = signal_stop.cancelled() => {}
            }
            signal_stop.cancel();
        });
        let server = async move {
            let served = server.await;
            // Also stop the loops if the server ends on its own (an accept error).
            stop_after_serve.cancel();
            served
        };
        let (served, ()) = tokio::join!(server, background::run(self.ctx, stop));
        served.map_err(Error::Serve)
    }
}

/// The service's routes: subscriptions, `/healthz`, `/readyz`, `/metrics`.
pub fn app(state: AppState, settings: &Settings) -> Result<Router, Error> {
    // Applications built at the same moment in one process (tests) race to install the global
    // recorder, and the loser gets an error until the winner has stored its handle: ask again.
    let mut attempts = 0;
    let prometheus = loop {
        match service_kit::prometheus() {
            Ok(handle) => break handle,
            Err(error) if attempts >= 100 => return Err(error.into()),
            Err(_) => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    };
    let subscriptions = apply::subscriptions(&settings.pubsub_name, &settings.app_id)
        .app_api_token(settings.app_api_token.clone());
    Ok(Router::new()
        .merge(subscriptions.router(Arc::clone(&state)))
        .merge(service_kit::health_routes(state.dapr.clone()))
        .merge(service_kit::metrics_routes(prometheus))
        .layer(RequestBodyLimitLayer::new(settings.max_body_size))
        .layer(TraceLayer::new_for_http()))
}
