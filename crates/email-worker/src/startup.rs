//! Building the application (transport, templates, ledger, routes) and running it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use dapr_http::DaprClient;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::compose::Composer;
use crate::ledger::Ledger;
use crate::mailer::Mailer;
use crate::settings::Settings;
use crate::templates::Templates;
use crate::worker::Worker;
use crate::{Error, counters, subscriber};
use service_kit::LayeredSettings as _;

/// Largest delivery accepted: daprd's own default body limit.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The bound, not yet running service.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    worker: Arc<Worker>,
}

impl Application {
    /// Validates the settings, builds the transport and binds the listener (port 0 = any).
    pub async fn build(settings: Settings) -> Result<Self, Error> {
        let s = settings.worker;
        s.validate()?;
        let dapr = DaprClient::new(settings.dapr)?;
        let mailer = Mailer::from_settings(&s)?;
        let composer = Composer::new(
            Templates::new(s.template_dir.clone(), s.subject_max_chars),
            s.sender()?,
        );
        composer.check_templates()?;
        let worker = Arc::new(Worker {
            ledger: Ledger::new(
                dapr.clone(),
                s.state_store_name.clone(),
                s.claim_ttl,
                s.sent_ttl,
            ),
            dapr: dapr.clone(),
            composer,
            mailer,
            send_permits: Arc::new(Semaphore::new(s.max_concurrent_sends)),
            pubsub: s.pubsub_name.clone(),
            app_id: s.app_id.clone(),
            max_event_age: s.max_event_age,
        });
        // The recorder first (inside `app`), then the series it should show from the start.
        let router = app(Arc::clone(&worker), s.app_api_token.clone(), dapr)?;
        counters::describe();
        let listener = TcpListener::bind(SocketAddr::new(s.app_host, s.app_port)).await?;
        tracing::info!(
            app_id = %s.app_id,
            address = %listener.local_addr()?,
            transport = worker.mailer.description(),
            max_concurrent_sends = s.max_concurrent_sends,
            templates = %s.template_dir.as_ref().map_or("built-in".to_owned(), |d| format!("{} (over built-in)", d.display())),
            "email-worker ready"
        );
        Ok(Self {
            listener,
            router,
            worker,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Which transport is active (password redacted).
    pub fn transport_description(&self) -> &str {
        self.worker.mailer.description()
    }

    /// Serves until SIGTERM/Ctrl-C, finishing deliveries in progress.
    pub async fn run_until_stopped(self) -> Result<(), Error> {
        self.run_until(service_kit::shutdown_signal()).await
    }

    /// Serves until `signal` resolves (tests stop the service this way).
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(signal)
            .await?;
        // No new sends can start once the permits are closed.
        self.worker.send_permits.close();
        Ok(())
    }
}

/// The whole HTTP surface: subscriptions, health, metrics.
pub fn app(
    worker: Arc<Worker>,
    app_api_token: Option<secrecy::SecretString>,
    dapr: DaprClient,
) -> Result<Router, Error> {
    let prometheus = service_kit::prometheus()?;
    Ok(subscriber::routes(worker, app_api_token)
        .merge(service_kit::health_routes(dapr))
        .merge(service_kit::metrics_routes(prometheus))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TraceLayer::new_for_http()))
}
