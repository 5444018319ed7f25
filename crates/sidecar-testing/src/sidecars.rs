//! Sidecars started by the harness: the builder that starts one, and the handle a test keeps.

use crate::error::HarnessError;
use sidecar_core::runtime::Runtime;
use sidecar_core::{SidecarHandle, SidecarOptions, start_sidecar};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Token argument accepted by the builder (`"t"`, `String`, `Some(..)`, `None`).
pub trait TokenArg {
    fn into_token(self) -> Option<String>;
}
impl TokenArg for &str {
    fn into_token(self) -> Option<String> {
        Some(self.to_string())
    }
}
impl TokenArg for String {
    fn into_token(self) -> Option<String> {
        Some(self)
    }
}
impl TokenArg for &String {
    fn into_token(self) -> Option<String> {
        Some(self.clone())
    }
}
impl<T: TokenArg> TokenArg for Option<T> {
    fn into_token(self) -> Option<String> {
        self.and_then(TokenArg::into_token)
    }
}

/// One sidecar the harness started; `handle` is gone once it was shut down.
#[derive(Debug)]
pub(crate) struct Entry {
    id: u64,
    pub(crate) app_id: String,
    pub(crate) endpoint: String,
    pub(crate) api_token: Option<String>,
    pub(crate) handle: Option<SidecarHandle>,
}

/// The sidecars a cluster started.
#[derive(Debug, Default)]
pub(crate) struct Started {
    next: u64,
    pub(crate) entries: Vec<Entry>,
}

/// Shared by a cluster, its builders and its test sidecars.
pub(crate) type StartedSidecars = Arc<Mutex<Started>>;

fn lock(started: &StartedSidecars) -> std::sync::MutexGuard<'_, Started> {
    started
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Options of a sidecar about to start.
#[derive(Debug)]
pub struct SidecarBuilder<'a> {
    runtime: &'a Arc<Runtime>,
    started: &'a StartedSidecars,
    opts: SidecarOptions,
}

impl<'a> SidecarBuilder<'a> {
    pub(crate) fn new(
        runtime: &'a Arc<Runtime>,
        started: &'a StartedSidecars,
        app_id: &str,
    ) -> Self {
        Self {
            runtime,
            started,
            opts: SidecarOptions::new(app_id),
        }
    }

    /// App port (`Some(port)` or a plain `port`); `None` = no app channel.
    pub fn app_port(mut self, port: impl Into<Option<u16>>) -> Self {
        self.opts.app_port = port.into();
        self
    }

    /// Token sent to the app as `dapr-api-token` (`APP_API_TOKEN`).
    pub fn app_api_token(mut self, token: impl TokenArg) -> Self {
        self.opts.app_api_token = token.into_token();
        self
    }

    /// Token required on the sidecar's API (`DAPR_API_TOKEN`).
    pub fn api_token(mut self, token: impl TokenArg) -> Self {
        self.opts.api_token = token.into_token();
        self
    }

    /// Who may invoke this app (`spec.accessControl` of a Configuration).
    pub fn access_control(mut self, acl: sidecar_core::acl::AccessControl) -> Self {
        self.opts.access_control = Some(acl);
        self
    }

    /// Where and how much this sidecar traces (`spec.tracing` of a Configuration).
    pub fn tracing(mut self, tracing: sidecar_core::otel::TracingOptions) -> Self {
        self.opts.tracing = Some(tracing);
        self
    }

    /// Largest request body accepted.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.opts.max_body_size = bytes;
        self
    }

    /// Binds 127.0.0.1:0 and starts. When the app port already accepts connections this waits
    /// (up to 10 s) until subscriptions are registered.
    pub async fn start(self) -> Result<TestSidecar, HarnessError> {
        let app_addr = self
            .opts
            .app_port
            .map(|p| format!("{}:{p}", self.opts.app_channel_address));
        let api_token = self.opts.api_token.clone();
        let app_id = self.opts.app_id.clone();
        let handle = start_sidecar(self.runtime.clone(), self.opts).await?;
        let app_up = match &app_addr {
            Some(a) => tokio::net::TcpStream::connect(a).await.is_ok(),
            None => true,
        };
        if app_up && !handle.wait_ready(Duration::from_secs(10)).await {
            handle.shutdown().await;
            return Err(HarnessError::NotReady(app_id));
        }
        let endpoint = handle.http_endpoint();
        let addr = handle.local_addr();
        let mut reg = lock(self.started);
        reg.next += 1;
        let id = reg.next;
        reg.entries.push(Entry {
            id,
            app_id: app_id.clone(),
            endpoint: endpoint.clone(),
            api_token,
            handle: Some(handle),
        });
        Ok(TestSidecar {
            id,
            app_id,
            addr,
            started: self.started.clone(),
        })
    }
}

/// A sidecar started by the harness.
#[derive(Debug)]
pub struct TestSidecar {
    id: u64,
    app_id: String,
    addr: std::net::SocketAddr,
    started: StartedSidecars,
}

impl TestSidecar {
    /// `http://127.0.0.1:<port>`.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Dapr HTTP port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// App id served.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Waits until the sidecar reports ready (app channel up, subscriptions registered).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let rx = {
            lock(&self.started)
                .entries
                .iter()
                .find(|e| e.id == self.id)
                .and_then(|e| e.handle.as_ref())
                .map(SidecarHandle::ready_receiver)
        };
        let Some(mut rx) = rx else { return false };
        tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops this sidecar (its subscriptions leave their consumer groups).
    pub async fn shutdown(self) {
        let handle = lock(&self.started)
            .entries
            .iter_mut()
            .find(|e| e.id == self.id)
            .and_then(|e| e.handle.take());
        if let Some(h) = handle {
            h.shutdown().await;
        }
    }
}
