//! The test harness of the local sidecar, and nothing else: in-process sidecars on random ports
//! sharing one runtime ([`Cluster`]), a log of what was published ([`PublishLog`]), and fault
//! injection ([`Faults`]). Use it only from `[dev-dependencies]`.
//!
//! The log and the faults are not part of the sidecar: the harness wraps every pub/sub and state
//! store its runtime builds (decorators in the component registry, see the `hooks` module), so
//! the production code never checks for them.
//!
//! `dapr-test-app`, the small app of the multi-app run tests, is a binary of the `sidecar` crate,
//! whose tests run it: Cargo gives tests the paths of their own package's binaries only.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sidecar_testing::HarnessError> {
//! use sidecar_testing::Cluster;
//! use std::time::Duration;
//! let cluster = Cluster::in_memory().await?; // todo-state + todo-pubsub, in memory
//! let app_port = 8080; // the app under test, already listening
//! let sc = cluster.sidecar("email-worker").app_port(Some(app_port)).start().await?;
//! let dapr = sc.http_endpoint(); // give this to the app as DAPR_HTTP_ENDPOINT
//! cluster.publish("task-api", "task-created", &serde_json::json!({"id": 1})).await?;
//! let events = cluster.wait_for_published("task-created", 1, Duration::from_secs(5)).await?;
//! # let _ = (dapr, events); Ok(()) }
//! ```
//!
//! `start()` waits for the sidecar to be ready (subscriptions registered) when the app port
//! already accepts connections, so an event published right after `start()` is delivered. Start
//! the app first; if the app starts later, use [`TestSidecar::wait_ready`].

mod cluster;
mod error;
mod faults;
mod hooks;
mod kafka;
mod publish_log;
mod sidecars;

pub use cluster::{Cluster, PUBSUB, STATE_STORE};
pub use error::HarnessError;
pub use faults::Faults;
pub use kafka::{KafkaBroker, TANSU_VERSION, parse_topics_conf, tansu_binary};
pub use publish_log::{PUBLISH_LOG_LIMIT, PublishLog};
pub use sidecars::{SidecarBuilder, TestSidecar, TokenArg};

/// A loopback port nobody listens on (checked by binding it), for a process that must be told
/// its port before it binds it: [`sidecar_core::ports::free_loopback_port`], from below the
/// kernel's ephemeral range so no outgoing connection takes it in the meantime.
///
/// # Panics
/// When the machine has no free loopback port: no test could run then.
#[allow(clippy::expect_used)]
pub fn free_port() -> u16 {
    sidecar_core::ports::free_loopback_port().expect("no free loopback port")
}
