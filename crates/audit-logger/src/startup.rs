//! Building and running the service.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use dapr_http::DaprClient;
use service_kit::{LayeredSettings as _, Service, Shutdown};
use tokio::net::TcpListener;

use crate::checkpoint::PendingCheckpoints;
use crate::context::{AppState, Context};
use crate::error::Error;
use crate::settings::Settings;
use crate::sink::{EntrySink, NullSink, StdoutSink};
use crate::trail::TrailStore;

/// A built service, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    ctx: AppState,
    checkpoint_interval: Duration,
}

/// What an embedder may replace: where entries go besides the store (tests keep them in memory).
/// Unset, `AUDIT_STDOUT` decides between stdout and nowhere.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub sink: Option<Arc<dyn EntrySink>>,
}

impl Service for Application {
    type Settings = Settings;
    type Error = Error;
    type Overrides = Overrides;
    /// The shared context (tests inspect the trails through it).
    type Handle = AppState;

    /// Validates the settings (tests change them after loading) and wires the service.
    async fn build_with(
        settings: Settings,
        listener: TcpListener,
        overrides: Overrides,
    ) -> Result<Self, Error> {
        settings.validate()?;
        let common = &settings.common;
        let dapr = DaprClient::new(common.dapr.clone())?;
        let admin_token = settings.audit_admin_token.clone().ok_or_else(|| {
            crate::settings::SettingsError::Invalid("AUDIT_ADMIN_TOKEN must be set".into())
        })?;
        let key = settings.chain_key()?;
        let sink: Arc<dyn EntrySink> = match overrides.sink {
            Some(sink) => sink,
            None if settings.audit_stdout => Arc::new(StdoutSink::start().map_err(Error::Serve)?),
            None => Arc::new(NullSink),
        };
        let ctx = Arc::new(Context {
            trails: TrailStore::new(
                dapr,
                common.state_store_name.clone(),
                key,
                settings.trail_chunk_size,
                settings.append_max_attempts,
            ),
            sink,
            checkpoints: PendingCheckpoints::default(),
            pubsub: common.pubsub_name.clone(),
            app_id: common.app_id.clone(),
            admin_token,
            page_limit_default: settings.page_limit_default,
            page_limit_max: settings.page_limit_max,
        });
        let router = app(Arc::clone(&ctx), &settings)?;
        tracing::info!(chunk_size = settings.trail_chunk_size, "audit-logger ready");
        Ok(Self {
            listener,
            router,
            ctx,
            checkpoint_interval: settings.checkpoint_interval,
        })
    }

    fn handle(&self) -> AppState {
        Arc::clone(&self.ctx)
    }

    async fn run_until(self, shutdown: Shutdown) -> Result<(), Error> {
        let ctx = Arc::clone(&self.ctx);
        let interval = self.checkpoint_interval;
        let checkpoints = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                write_checkpoints(&ctx);
            }
        });
        let served = service_kit::serve(self.listener, self.router, &shutdown).await;
        checkpoints.abort();
        // What was appended since the last round is signed before the process goes away.
        write_checkpoints(&self.ctx);
        served.map_err(Error::Serve)
    }
}

/// Signs a checkpoint of every trail appended to since the last round and writes it out.
fn write_checkpoints(ctx: &Context) {
    for checkpoint in ctx.checkpoints.take(ctx.trails.key(), chrono::Utc::now()) {
        ctx.sink.write_checkpoint(&checkpoint);
    }
}

/// The service's routes: subscriptions, the admin API, `/healthz`, `/readyz`, `/metrics`.
pub fn app(ctx: AppState, settings: &Settings) -> Result<Router, Error> {
    let common = &settings.common;
    let subscriptions = crate::subscriptions::subscriptions(&common.pubsub_name, &common.app_id)
        .app_api_token(common.app_api_token.clone());
    let routes = Router::new()
        .merge(subscriptions.router(Arc::clone(&ctx)))
        .merge(crate::api::routes(Arc::clone(&ctx)));
    Ok(service_kit::service_router(
        routes,
        common,
        ctx.trails.dapr().clone(),
    )?)
}
