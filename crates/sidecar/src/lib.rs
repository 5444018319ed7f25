//! Local Dapr-API-compatible sidecar.
//!
//! The crate stands in for `daprd` in development and tests: it loads Dapr component,
//! subscription and resiliency YAML, hosts in-memory state and pub/sub components shared by every
//! sidecar of one [`Runtime`] (so a multi-app run behaves like several apps on one broker), serves
//! the Dapr HTTP API with daprd's statuses and bodies, and delivers CloudEvents to the app exactly
//! the way daprd does (programmatic and declarative subscriptions, CEL routing, response
//! interpretation, resiliency retries, dead letters).
//!
//! Entry points: [`load_resources`], [`Runtime::new`], [`start_sidecar`], and the test harness in
//! [`testing`].

pub mod api;
pub mod cli;
pub mod cloudevent;
pub mod components;
pub mod delivery;
pub mod faults;
pub mod invoke;
pub mod metadata;
pub mod resources;
pub mod runfile;
pub mod runner;
pub mod runtime;
pub mod scopes;
pub mod secretstores;
pub mod sidecar;
pub mod testing;
pub mod tokens;

pub use resources::{ResourceError, Resources, load_resources};
pub use runtime::Runtime;
pub use sidecar::{SidecarHandle, SidecarOptions, StartError, start_sidecar};

/// Runtime version reported by `GET /v1.0/metadata` (the daprd line this sidecar follows).
pub const RUNTIME_VERSION: &str = "1.16.19-local";
