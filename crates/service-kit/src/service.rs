//! The shape every service has: settings that carry the [`CommonSettings`], an application
//! built on a listener its caller bound, and a run that ends when a [`Shutdown`] is triggered.
//! `main` calls [`run`]; tests start the same [`Service`] on a port-0 listener next to an
//! in-process sidecar and stop it through the same [`Shutdown`].

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

use crate::{CommonSettings, LayeredSettings, Shutdown};

/// A service's settings: its own keys plus the shared ones.
pub trait ServiceSettings: LayeredSettings + Clone + Send + Sync + 'static {
    fn common(&self) -> &CommonSettings;
    fn common_mut(&mut self) -> &mut CommonSettings;
}

/// One deployable service.
pub trait Service: Sized + Send + 'static {
    type Settings: ServiceSettings;
    type Error: std::error::Error + Send + Sync + 'static;
    /// Collaborators an embedder may replace (a clock, an output sink); `Default` gives the
    /// production ones, `()` when there are none.
    type Overrides: Default + Send + 'static;
    /// A view of the running service for its embedder (lease state, counters, shared state);
    /// `()` when there is nothing to see.
    type Handle: Clone + Send + Sync + 'static;

    /// Builds the application on `listener` with `overrides`. Nothing is served yet.
    fn build_with(
        settings: Self::Settings,
        listener: TcpListener,
        overrides: Self::Overrides,
    ) -> impl Future<Output = Result<Self, Self::Error>> + Send;

    /// Builds the application on `listener` with its production collaborators.
    fn build(
        settings: Self::Settings,
        listener: TcpListener,
    ) -> impl Future<Output = Result<Self, Self::Error>> + Send {
        Self::build_with(settings, listener, Self::Overrides::default())
    }

    fn handle(&self) -> Self::Handle;

    /// Serves, and runs the background tasks, until `shutdown` is triggered; returns once the
    /// requests in flight and the background tasks have finished.
    fn run_until(self, shutdown: Shutdown) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Why [`run`] stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E: std::error::Error + 'static> {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Service(E),
}

/// Binds `APP_HOST:APP_PORT`, builds `S`, and runs it until SIGTERM or Ctrl-C; then exports the
/// spans still queued.
pub async fn run<S: Service>(settings: S::Settings) -> Result<(), RunError<S::Error>> {
    let common = settings.common();
    let address = common.address();
    let listener = TcpListener::bind((common.app_host.as_str(), common.app_port))
        .await
        .map_err(|source| RunError::Bind {
            address: address.clone(),
            source,
        })?;
    let app_id = common.app_id.clone();
    // Installed before the build, so a stop asked for while starting is not lost.
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let service = S::build(settings, listener)
        .await
        .map_err(RunError::Service)?;
    tracing::info!(%app_id, %address, "listening");
    let ran = service.run_until(shutdown).await.map_err(RunError::Service);
    // After the requests in flight and the background tasks: their spans are the last queued.
    crate::flush_traces().await;
    ran
}

/// Serves `router` on `listener` until `shutdown` is triggered, then lets the requests in flight
/// finish. If the server ends on its own (an accept error), it triggers `shutdown` itself so the
/// background tasks sharing it stop too.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.triggered())
        .await;
    shutdown.trigger();
    served
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::time::Duration;

    #[tokio::test]
    async fn serving_ends_when_the_shutdown_is_triggered() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().route("/", get(|| async { "up" }));
        let shutdown = Shutdown::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { serve(listener, router, &shutdown).await }
        });
        let body = reqwest::get(format!("http://{address}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "up");
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
