//! Building the router and running the service: the HTTP server, the outbox relay, the outbox
//! cleaner and the outbox lease keeper, all stopped together by one `service_kit::Shutdown`.

use axum::middleware;
use axum::routing::get;
use axum::{Extension, Json, Router};
use dapr_http::DaprClient;
use service_kit::{CommonSettings, Service, Shutdown};
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::context::correlate;
use crate::json::BodyLimit;
use crate::outbox::Outbox;
use crate::repository::OpenTaskLimit;
use crate::repository::{IndexLayout, TaskRepository};
use crate::request_metrics::record_metrics;
use crate::routes::{self, AppState};
use crate::settings::Settings;
use crate::tasks::TaskService;

/// Why the service could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error(transparent)]
    Dapr(#[from] dapr_http::DaprError),
    #[error(transparent)]
    Telemetry(#[from] service_kit::TelemetryError),
    #[error("serving failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The router with every route and layer.
pub fn app(
    state: AppState,
    dapr: DaprClient,
    common: &CommonSettings,
) -> Result<Router, StartError> {
    let api = routes::router(state).route(
        "/openapi.json",
        get(|| async { Json(crate::openapi::document()) }),
    );
    Ok(service_kit::service_router(api, common, dapr)?
        .layer(Extension(BodyLimit(common.max_body_size)))
        .layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn(correlate)))
}

/// A built, not yet running service.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    outbox: Outbox,
    settings: Settings,
}

impl Service for Application {
    type Settings = Settings;
    type Error = StartError;
    type Overrides = ();
    type Handle = ();

    async fn build_with(
        settings: Settings,
        listener: TcpListener,
        (): (),
    ) -> Result<Self, StartError> {
        let auth = Authenticator::from_settings(&settings)?;
        let dapr = DaprClient::new(settings.common.dapr.clone())?;
        let repository = TaskRepository::new(
            dapr.clone(),
            settings.common.state_store_name.clone(),
            settings.tombstone_ttl,
            settings.conflict_retries,
        )
        .with_index(
            IndexLayout {
                head_size: settings.index_head_size,
                segment_size: settings.index_segment_size,
            },
            OpenTaskLimit::new(settings.max_open_tasks_per_user),
        );
        let outbox = Outbox::with_lease_ttl(
            repository.clone(),
            dapr.clone(),
            settings.common.pubsub_name.clone(),
            settings.outbox_shards,
            settings.outbox_lease_ttl,
        );
        let tasks = TaskService::new(repository, outbox.clone(), settings.common.app_id.clone());
        let router = app(AppState { tasks, auth }, dapr, &settings.common)?;
        Ok(Self {
            listener,
            router,
            outbox,
            settings,
        })
    }

    fn handle(&self) {}

    /// The server and the outbox loops run in this one task, so aborting it stops all of them
    /// as a crash would.
    async fn run_until(self, shutdown: Shutdown) -> Result<(), StartError> {
        // The outbox loops stop on a watch channel; it follows the shutdown once serving ends.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop_rx_cleaner = stop_rx.clone();
        let lease = self.outbox.clone().run_lease(stop_rx.clone());
        let relay = self.outbox.clone().run_relay(
            self.settings.outbox_relay_interval,
            self.settings.outbox_grace_period,
            stop_rx,
        );
        let cleaner = self
            .outbox
            .clone()
            .run_cleaner(self.settings.index_projection_interval, stop_rx_cleaner);
        let server = async {
            let served = service_kit::serve(self.listener, self.router, &shutdown).await;
            let _ = stop_tx.send(true);
            served
        };
        let (served, (), (), ()) = tokio::join!(server, relay, cleaner, lease);
        served.map_err(StartError::Serve)
    }
}
