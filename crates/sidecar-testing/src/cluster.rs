//! The harness: a [`Cluster`] of in-process sidecars on random ports sharing one runtime, and the
//! sidecars started on it.

use crate::faults::Faults;
use crate::hooks::{self, PlainStores};
use crate::publish_log::PublishLog;
use sidecar_core::Registry as Components;
use sidecar_core::components::StateStore;
use sidecar_core::resources::{ComponentSpec, ResourceError, Resources};
use sidecar_core::runtime::Runtime;
use sidecar_core::{SidecarHandle, SidecarOptions, StartError, start_sidecar};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The components a harness runtime can load: the core's built-ins and Redis, as in the
/// `sidecar` binary, with the harness's hooks around every pub/sub and state store.
fn components(faults: &Arc<Faults>, log: &Arc<PublishLog>, plain: &PlainStores) -> Components {
    let mut registry = Components::with_builtins();
    sidecar_redis::register(&mut registry);
    hooks::install(&mut registry, faults, log, plain);
    registry
}

/// Default state store of [`Cluster::in_memory`].
pub const STATE_STORE: &str = "todo-state";
/// Default pub/sub of [`Cluster::in_memory`].
pub const PUBSUB: &str = "todo-pubsub";

/// Harness failures.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Resources(#[from] ResourceError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("timed out waiting for {wanted} event(s) on {topic}; got {got}")]
    Timeout {
        topic: String,
        wanted: usize,
        got: usize,
    },
    #[error(
        "sidecar of {0} did not become ready (is the app listening and answering /dapr/subscribe?)"
    )]
    NotReady(String),
    #[error("no pub/sub component is loaded")]
    NoPubSub,
    #[error("publish failed with HTTP {status}: {body}")]
    Publish { status: u16, body: String },
    #[error("HTTP error: {0}")]
    Http(#[from] reqwest::Error),
}

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

#[derive(Debug)]
struct Entry {
    id: u64,
    app_id: String,
    endpoint: String,
    api_token: Option<String>,
    handle: Option<SidecarHandle>,
}

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    entries: Vec<Entry>,
}

/// A runtime plus the sidecars started on it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cluster {
    runtime: Arc<Runtime>,
    registry: Arc<Mutex<Registry>>,
    client: reqwest::Client,
    faults: Arc<Faults>,
    log: Arc<PublishLog>,
    plain_stores: PlainStores,
}

impl Cluster {
    /// `todo-state` (`state.in-memory`) and `todo-pubsub` (`pubsub.in-memory`), no scopes.
    pub async fn in_memory() -> Result<Self, HarnessError> {
        let resources = Resources {
            components: vec![
                ComponentSpec::new(STATE_STORE, "state.in-memory"),
                ComponentSpec::new(PUBSUB, "pubsub.in-memory"),
            ],
            ..Resources::default()
        };
        Self::from(resources)
    }

    /// Components, subscriptions and resiliency from YAML files or folders.
    pub async fn from_resources<P: AsRef<Path>>(paths: &[P]) -> Result<Self, HarnessError> {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.as_ref().to_path_buf()).collect();
        Self::from(sidecar_core::load_resources(&paths)?)
    }

    /// A cluster over already loaded resources.
    pub fn from(resources: Resources) -> Result<Self, HarnessError> {
        let faults = Arc::new(Faults::default());
        let log = Arc::new(PublishLog::default());
        let plain_stores = PlainStores::default();
        let runtime = Runtime::new(resources, &components(&faults, &log, &plain_stores))?;
        Ok(Self {
            runtime,
            registry: Arc::new(Mutex::new(Registry::default())),
            client: reqwest::Client::new(),
            faults,
            log,
            plain_stores,
        })
    }

    /// The shared runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts building a sidecar for `app_id`.
    pub fn sidecar(&self, app_id: &str) -> SidecarBuilder<'_> {
        SidecarBuilder {
            cluster: self,
            opts: SidecarOptions::new(app_id),
        }
    }

    /// Every CloudEvent (or raw payload) published to `topic`, in order; dead letters included.
    pub fn published(&self, topic: &str) -> Vec<serde_json::Value> {
        self.log.published(topic)
    }

    /// Waits until at least `n` messages were published to `topic`; returns all of them.
    pub async fn wait_for_published(
        &self,
        topic: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<serde_json::Value>, HarnessError> {
        self.log
            .wait_for(topic, n, timeout)
            .await
            .ok_or_else(|| HarnessError::Timeout {
                topic: topic.to_string(),
                wanted: n,
                got: self.published(topic).len(),
            })
    }

    fn default_pubsub(&self) -> Option<String> {
        let comps = &self.runtime.resources().components;
        comps
            .iter()
            .find(|c| c.name == PUBSUB)
            .or_else(|| comps.iter().find(|c| c.building_block() == "pubsub"))
            .map(|c| c.name.clone())
    }

    /// The default state store as its component built it (no injected failures).
    fn default_store(&self) -> Option<(&ComponentSpec, Arc<dyn StateStore>)> {
        let comps = &self.runtime.resources().components;
        let spec = comps
            .iter()
            .find(|c| c.name == STATE_STORE)
            .or_else(|| comps.iter().find(|c| c.building_block() == "state"))?;
        let store = self
            .plain_stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&spec.name)
            .cloned()?;
        Some((spec, store))
    }

    /// Publishes `data` (as `application/json`) to `topic` on the default pub/sub through the
    /// HTTP API of a sidecar of `app_id`; one without an app port is started if needed.
    pub async fn publish(
        &self,
        app_id: &str,
        topic: &str,
        data: &serde_json::Value,
    ) -> Result<(), HarnessError> {
        let pubsub = self.default_pubsub().ok_or(HarnessError::NoPubSub)?;
        let existing = self
            .registry()
            .entries
            .iter()
            .find(|e| e.app_id == app_id && e.handle.is_some())
            .map(|e| (e.endpoint.clone(), e.api_token.clone()));
        let (endpoint, token) = match existing {
            Some(found) => found,
            None => {
                let sc = self.sidecar(app_id).start().await?;
                (sc.http_endpoint(), None)
            }
        };
        let mut req = self
            .client
            .post(format!("{endpoint}/v1.0/publish/{pubsub}/{topic}"))
            .json(data);
        if let Some(t) = token {
            req = req.header(sidecar_core::tokens::TOKEN_HEADER, t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        if status == 204 {
            return Ok(());
        }
        Err(HarnessError::Publish {
            status,
            body: resp.text().await.unwrap_or_default(),
        })
    }

    /// The value stored under `key` for `app_id` in the default state store (key prefix applied
    /// as daprd does), or `None` when absent or expired.
    pub async fn state_of(&self, app_id: &str, key: &str) -> Option<serde_json::Value> {
        let (spec, store) = self.default_store()?;
        let prefix = sidecar_core::metadata::key_prefix(spec, app_id);
        let full = sidecar_core::metadata::prefixed_key(prefix.as_deref(), key);
        let item = store.get(&full).await.ok()??;
        serde_json::from_slice(&item.data).ok()
    }

    /// Keys of `app_id` in the default state store, without their prefix, sorted.
    pub async fn state_keys(&self, app_id: &str) -> Vec<String> {
        let Some((spec, store)) = self.default_store() else {
            return Vec::new();
        };
        let prefix = sidecar_core::metadata::key_prefix(spec, app_id);
        let keys = store.keys().await.unwrap_or_default();
        match prefix {
            Some(p) => {
                let head = format!("{p}{}", sidecar_core::metadata::KEY_SEPARATOR);
                keys.iter()
                    .filter_map(|k| k.strip_prefix(&head).map(String::from))
                    .collect()
            }
            None => keys,
        }
    }

    /// Fault switches (shared by every sidecar of the cluster).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Stops every sidecar still running and the brokers.
    pub async fn shutdown(self) {
        let handles: Vec<SidecarHandle> = self
            .registry()
            .entries
            .iter_mut()
            .filter_map(|e| e.handle.take())
            .collect();
        for h in handles {
            h.shutdown().await;
        }
        self.runtime.shutdown().await;
    }
}

/// Options of a sidecar about to start.
#[derive(Debug)]
pub struct SidecarBuilder<'a> {
    cluster: &'a Cluster,
    opts: SidecarOptions,
}

impl SidecarBuilder<'_> {
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
        let handle = start_sidecar(self.cluster.runtime.clone(), self.opts).await?;
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
        let mut reg = self.cluster.registry();
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
            registry: self.cluster.registry.clone(),
        })
    }
}

/// A sidecar started by the harness.
#[derive(Debug)]
pub struct TestSidecar {
    id: u64,
    app_id: String,
    addr: std::net::SocketAddr,
    registry: Arc<Mutex<Registry>>,
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
            let reg = self
                .registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            reg.entries
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
        let handle = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entries
            .iter_mut()
            .find(|e| e.id == self.id)
            .and_then(|e| e.handle.take());
        if let Some(h) = handle {
            h.shutdown().await;
        }
    }
}
