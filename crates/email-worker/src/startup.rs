//! Building the application (transport, templates, ledger, routes) and running it.

use std::sync::Arc;

use axum::Router;
use dapr_http::DaprClient;
use service_kit::{CommonSettings, LayeredSettings as _, Service, Shutdown};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::compose::Composer;
use crate::ledger::Ledger;
use crate::mailer::Mailer;
use crate::settings::Settings;
use crate::templates::Templates;
use crate::worker::Worker;
use crate::{Error, counters, subscriber};

/// A built, not yet running service.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    worker: Arc<Worker>,
}

impl Service for Application {
    type Settings = Settings;
    type Error = Error;
    type Overrides = ();
    /// Which transport is active (password redacted).
    type Handle = String;

    /// Validates the settings (tests change them after loading), builds the transport and the
    /// routes.
    async fn build_with(settings: Settings, listener: TcpListener, (): ()) -> Result<Self, Error> {
        settings.validate()?;
        let common = &settings.common;
        let dapr = DaprClient::new(common.dapr.clone())?;
        let mailer = Mailer::from_settings(&settings)?;
        let composer = Composer::new(
            Templates::new(settings.template_dir.clone(), settings.subject_max_chars),
            settings.sender()?,
        );
        composer.check_templates()?;
        let worker = Arc::new(Worker {
            ledger: Ledger::new(
                dapr.clone(),
                common.state_store_name.clone(),
                settings.claim_ttl,
                settings.sent_ttl,
            ),
            dapr: dapr.clone(),
            composer,
            mailer,
            send_permits: Arc::new(Semaphore::new(settings.max_concurrent_sends)),
            pubsub: common.pubsub_name.clone(),
            app_id: common.app_id.clone(),
            max_event_age: settings.max_event_age,
        });
        // The recorder first (inside `app`), then the series it should show from the start.
        let router = app(Arc::clone(&worker), common, dapr)?;
        counters::describe();
        tracing::info!(
            app_id = %common.app_id,
            address = %listener.local_addr()?,
            transport = worker.mailer.description(),
            max_concurrent_sends = settings.max_concurrent_sends,
            templates = %settings.template_dir.as_ref().map_or("built-in".to_owned(), |d| format!("{} (over built-in)", d.display())),
            "email-worker ready"
        );
        Ok(Self {
            listener,
            router,
            worker,
        })
    }

    fn handle(&self) -> String {
        self.worker.mailer.description().to_owned()
    }

    /// Serves until `shutdown`, finishing deliveries in progress.
    async fn run_until(self, shutdown: Shutdown) -> Result<(), Error> {
        service_kit::serve(self.listener, self.router, &shutdown).await?;
        // No new sends can start once the permits are closed.
        self.worker.send_permits.close();
        Ok(())
    }
}

/// The whole HTTP surface: subscriptions, health, metrics.
pub fn app(
    worker: Arc<Worker>,
    common: &CommonSettings,
    dapr: DaprClient,
) -> Result<Router, Error> {
    let subscriptions = subscriber::routes(worker, common.app_api_token.clone());
    Ok(service_kit::service_router(subscriptions, common, dapr)?)
}
