//! Building the router and running the service: the HTTP server, the outbox relay and the
//! outbox cleaner, all stopped together on SIGTERM/Ctrl-C.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use dapr_http::{DaprClient, DaprSettings};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::context::correlate;
use crate::json::BodyLimit;
use crate::outbox::Outbox;
use crate::repository::TaskRepository;
use crate::routes::{self, AppState};
use crate::settings::Settings;
use crate::tasks::TaskService;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error(transparent)]
    Dapr(#[from] dapr_http::DaprError),
    #[error(transparent)]
    Telemetry(#[from] service_kit::TelemetryError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
}

/// The router with every route and layer.
pub fn app(state: AppState, dapr: DaprClient, max_body_bytes: usize) -> Result<Router, StartError> {
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
    Ok(api
        .merge(service_kit::health_routes(dapr))
        .merge(service_kit::metrics_routes(prometheus()?))
        .fallback(|| async { service_kit::Problem::not_found("no such route").into_response() })
        .method_not_allowed_fallback(|| async {
            service_kit::Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            )
            .into_response()
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(Extension(BodyLimit(max_body_bytes)))
        .layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn(correlate))
        .layer(TraceLayer::new_for_http()))
}

/// `service_kit::prometheus` fails for the loser when two threads install the recorder at the
/// same moment (several applications in one test process); serialising the first call avoids it.
fn prometheus() -> Result<metrics_exporter_prometheus::PrometheusHandle, service_kit::TelemetryError>
{
    static FIRST_CALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = FIRST_CALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    service_kit::prometheus()
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

/// A built, bound, not yet running service.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    outbox: Outbox,
    settings: Settings,
}

impl Application {
    /// Builds everything and binds `bind_address:app_port` (port 0 picks a free port).
    pub async fn build(settings: Settings, dapr: DaprSettings) -> Result<Self, StartError> {
        let auth = Authenticator::from_settings(&settings)?;
        let dapr = DaprClient::new(dapr)?;
        let repository = TaskRepository::new(
            dapr.clone(),
            settings.state_store_name.clone(),
            settings.tombstone_ttl,
            settings.conflict_retries,
        );
        let outbox = Outbox::new(
            repository.clone(),
            dapr.clone(),
            settings.pubsub_name.clone(),
            settings.outbox_shards,
        );
        let tasks = TaskService::new(repository, outbox.clone(), settings.app_id.clone());
        let router = app(AppState { tasks, auth }, dapr, settings.max_body_bytes)?;
        let address = format!("{}:{}", settings.bind_address, settings.app_port);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| StartError::Bind { address, source })?;
        Ok(Self {
            listener,
            router,
            outbox,
            settings,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until SIGTERM/Ctrl-C.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(service_kit::shutdown_signal()).await
    }

    /// Serves until `stop` resolves (tests pass their own signal).
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
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
        tracing::info!(
            port = self.listener.local_addr().map_or(0, |a| a.port()),
            "task-api listening"
        );
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(stop)
            .await;
        let _ = stop_tx.send(true);
        let _ = relay.await;
        let _ = cleaner.await;
        served
    }
}
