//! Building and running the service.

use std::sync::Arc;

use axum::Router;
use dapr_http::{DaprClient, DaprSettings};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::context::{AppState, Context};
use crate::error::Error;
use crate::settings::Settings;
use crate::sink::{EntrySink, NullSink, StdoutSink};
use crate::trail::TrailStore;
use service_kit::LayeredSettings as _;

/// A built service, listening but not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: Router,
    ctx: AppState,
}

impl Application {
    /// Binds `APP_HOST:APP_PORT`; the sidecar comes from the environment.
    pub async fn build(settings: Settings) -> Result<Self, Error> {
        let dapr = DaprSettings::from_env().map_err(dapr_http::DaprError::from)?;
        let sink: Arc<dyn EntrySink> = if settings.audit_stdout {
            Arc::new(StdoutSink::start().map_err(Error::Serve)?)
        } else {
            Arc::new(NullSink)
        };
        let address = format!("{}:{}", settings.app_host, settings.app_port);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| Error::Bind { address, source })?;
        Self::build_with(settings, dapr, sink, listener)
    }

    /// Builds on an already bound listener with explicit sidecar settings and entry sink (tests
    /// bind the app first because its sidecar needs the app's port).
    pub fn build_with(
        settings: Settings,
        dapr_settings: DaprSettings,
        sink: Arc<dyn EntrySink>,
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
        let admin_token = settings.audit_admin_token.clone().ok_or_else(|| {
            crate::settings::SettingsError::Invalid("AUDIT_ADMIN_TOKEN must be set".into())
        })?;
        let ctx = Arc::new(Context {
            trails: TrailStore::new(
                dapr,
                settings.state_store_name.clone(),
                settings.trail_chunk_size,
                settings.append_max_attempts,
            ),
            sink,
            pubsub: settings.pubsub_name.clone(),
            app_id: settings.app_id.clone(),
            admin_token,
            page_limit_default: settings.page_limit_default,
            page_limit_max: settings.page_limit_max,
        });
        let router = app(Arc::clone(&ctx), &settings)?;
        Ok(Self {
            listener,
            port,
            router,
            ctx,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared context (tests inspect the trails through it).
    pub fn context(&self) -> AppState {
        Arc::clone(&self.ctx)
    }

    /// Serves until SIGTERM/Ctrl-C.
    pub async fn run_until_stopped(self) -> Result<(), Error> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(service_kit::shutdown_signal())
            .await
            .map_err(Error::Serve)
    }
}

/// The service's routes: subscriptions, the admin API, `/healthz`, `/readyz`, `/metrics`.
pub fn app(ctx: AppState, settings: &Settings) -> Result<Router, Error> {
    let prometheus = service_kit::prometheus()?;
    let subscriptions =
        crate::subscriptions::subscriptions(&settings.pubsub_name, &settings.app_id)
            .app_api_token(settings.app_api_token.clone());
    Ok(Router::new()
        .merge(subscriptions.router(Arc::clone(&ctx)))
        .merge(crate::api::routes(Arc::clone(&ctx)))
        .merge(service_kit::health_routes(ctx.trails.dapr().clone()))
        .merge(service_kit::metrics_routes(prometheus))
        .layer(RequestBodyLimitLayer::new(settings.max_body_size))
        .layer(TraceLayer::new_for_http()))
}
