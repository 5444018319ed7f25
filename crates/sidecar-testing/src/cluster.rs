//! The harness: a [`Cluster`] of in-process sidecars on random ports sharing one runtime, and the
//! sidecars started on it.

use crate::error::HarnessError;
use crate::faults::Faults;
use crate::hooks::{self, PlainStores};
use crate::publish_log::PublishLog;
use crate::sidecars::{SidecarBuilder, Started, StartedSidecars};
use sidecar_core::Registry as Components;
use sidecar_core::SidecarHandle;
use sidecar_core::components::StateStore;
use sidecar_core::resources::{ComponentSpec, Resources};
use sidecar_core::runtime::Runtime;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The components a harness runtime can load: the core's built-ins, Redis and Kafka, as in the
/// `sidecar` binary, with the harness's hooks around every pub/sub and state store.
fn components(faults: &Arc<Faults>, log: &Arc<PublishLog>, plain: &PlainStores) -> Components {
    let mut registry = Components::with_builtins();
    sidecar_redis::register(&mut registry);
    sidecar_kafka::register(&mut registry);
    hooks::install(&mut registry, faults, log, plain);
    registry
}

/// Default state store of [`Cluster::in_memory`].
pub const STATE_STORE: &str = "todo-state";
/// Default pub/sub of [`Cluster::in_memory`].
pub const PUBSUB: &str = "todo-pubsub";

/// A runtime plus the sidecars started on it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cluster {
    runtime: Arc<Runtime>,
    started: StartedSidecars,
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
            started: StartedSidecars::default(),
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

    fn started(&self) -> std::sync::MutexGuard<'_, Started> {
        self.started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts building a sidecar for `app_id`.
    pub fn sidecar(&self, app_id: &str) -> SidecarBuilder<'_> {
        SidecarBuilder::new(&self.runtime, &self.started, app_id)
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
            .started()
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
            .started()
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
