//! Building the router and running the service: the HTTP server, the outbox relay and the
//! outbox cleaner, all stopped together by one `service_kit::Shutdown`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use dapr_http::DaprClient;
use service_kit::{CommonSettings, Service, Shutdown};
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::context::correlate;
use crate::json::BodyLimit;
use crate::outbox::Outbox;
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
    let api = Router::new()
        .route(
            "/api/tasks",
            post(routes::create_task).get(routes::list_tasks),
        )
        .route(
            "/api/tasks/{id}",
            get(routes::get_task)
                .patch(routes::update_task)
                .delete(routes::delete_task),
        )
        .route("/api/tasks/{id}/complete", post(routes::complete_task))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .with_state(state);
    Ok(service_kit::service_router(api, common, dapr)?
        .layer(Extension(BodyLimit(common.max_body_size)))
        .layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn(correlate)))
}

/// Request count and latency per route template (never per raw path: ids would explode the
/// number of series).
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("task_api_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("task_api_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// How often published outbox entries that no transaction swept are removed.
const CLEANUP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

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
        let outbox = Outbox::new(
            dapr.clone(),
            settings.common.state_store_name.clone(),
            settings.common.pubsub_name.clone(),
            settings.outbox_shards,
        );
        if settings.task_api_fault_crash_after_commit {
            tracing::warn!(
                "TASK_API_FAULT_CRASH_AFTER_COMMIT is on: the process aborts after every commit (tests only)"
            );
        }
        let tasks = TaskService {
            dapr: dapr.clone(),
            store: settings.common.state_store_name.clone(),
            app_id: settings.common.app_id.clone(),
            outbox: outbox.clone(),
            retries: settings.conflict_retries,
            tombstone_ttl: settings.tombstone_ttl,
            crash_after_commit: settings.task_api_fault_crash_after_commit,
        };
        let router = app(AppState { tasks, auth }, dapr, &settings.common)?;
        Ok(Self {
            listener,
            router,
            outbox,
            settings,
        })
    }

    fn handle(&self) {}

    async fn run_until(self, shutdown: Shutdown) -> Result<(), StartError> {
        // The outbox loops stop on a watch channel; it follows the shutdown once serving ends.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop_rx_cleaner = stop_rx.clone();
        let relay = tokio::spawn(self.outbox.clone().run_relay(
            self.settings.outbox_relay_interval,
            self.settings.outbox_grace_period,
            stop_rx,
        ));
        let cleaner = tokio::spawn(
            self.outbox
                .clone()
                .run_cleaner(CLEANUP_INTERVAL, stop_rx_cleaner),
        );
        let served = service_kit::serve(self.listener, self.router, &shutdown).await;
        let _ = stop_tx.send(true);
        let _ = relay.await;
        let _ = cleaner.await;
        served.map_err(StartError::Serve)
    }
}
