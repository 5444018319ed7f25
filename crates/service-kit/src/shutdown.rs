//! The one way a service stops: a [`Shutdown`] that the HTTP server and every background task
//! share. Whoever triggers it (SIGTERM or Ctrl-C in `main`, a test's `stop`, the server ending on
//! its own) stops all of them together; the server drains the requests in flight first.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A cheap-to-clone stop signal. Triggering it is idempotent; every clone sees it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks everything sharing this signal to stop.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the signal is triggered (at once if it already was). The future owns what
    /// it needs, so it can be handed to `axum::serve(..).with_graceful_shutdown`.
    pub fn triggered(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }

    /// Triggers this signal on SIGTERM (what Kubernetes sends before killing a pod) or Ctrl-C.
    pub fn trigger_on_signals(&self) -> JoinHandle<()> {
        let shutdown = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = os_signal() => shutdown.trigger(),
                () = shutdown.triggered() => {}
            }
        })
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn os_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let shutdown = Shutdown::new();
        let waiter = tokio::spawn(shutdown.clone().triggered());
        assert!(!shutdown.is_triggered());
        shutdown.clone().trigger();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(shutdown.is_triggered());
        // Already triggered: resolves at once.
        tokio::time::timeout(Duration::from_millis(10), shutdown.triggered())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_signal_watcher_ends_with_the_shutdown() {
        let shutdown = Shutdown::new();
        let watcher = shutdown.trigger_on_signals();
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(1), watcher)
            .await
            .unwrap()
            .unwrap();
    }
}
