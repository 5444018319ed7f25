//! The test harness of the services (a dev-dependency only: nothing here belongs in a
//! production build).
//!
//! * [`spawn_app`] / [`AppBuilder`]: any [`service_kit::Service`] started with its in-process
//!   sidecar on random ports, as it runs in production but for the listener and the sidecar's
//!   address; the returned [`TestApp`] stops it gracefully ([`TestApp::stop`]) or as a crash
//!   ([`TestApp::kill`]) and publishes as any producing app ([`TestApp::publish`]).
//! * [`settings`]: a service's settings from its own defaults plus the test's variables, never
//!   from the environment of the test process.
//! * [`TaskFixture`]: one task and the envelope of every topic about it.
//! * [`Producers`]: sidecars of the producing apps, to publish as they do, also before the
//!   service under test exists; [`sidecar_client`]: a client of a sidecar without an app.
//! * [`RedisServer`]: a `redis-server` owned by one test, and resources folders putting the
//!   state store and the pub/sub on it.
//! * [`Proxy`]: a recording, fault-injecting proxy between an app and its sidecar.
//! * [`Cluster`] and [`TestSidecar`], the sidecar's own harness, and [`KafkaBroker`] (a tansu
//!   broker owned by one test), re-exported: this crate is the one place that names where they
//!   come from; [`kafka_broker`] starts one holding production's topics, and
//!   [`RedisServer::kafka`] puts the pub/sub on it.
//!
//! A harness fails loudly: set-up errors panic with what went wrong, as a test would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fixtures;
pub mod metrics;
pub mod producers;
pub mod proxy;
pub mod redis;
pub mod spawn;

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

pub use fixtures::TaskFixture;
pub use metrics::counter;
pub use producers::{Producers, sidecar_client};
pub use proxy::{Proxy, TxnFault};
pub use redis::RedisServer;
pub use sidecar_testing::{Cluster, KafkaBroker, TestSidecar, free_port};
pub use spawn::{AppBuilder, TestApp, settings, spawn_app};

/// `deploy/redpanda/topics.conf`: the topics production creates, with their partitions.
pub fn production_topics() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/redpanda/topics.conf")
}

/// A tansu broker of the test's own holding production's topics ([`production_topics`]).
pub fn kafka_broker() -> KafkaBroker {
    let broker = KafkaBroker::start();
    broker.create_topics_from(&production_topics());
    broker
}

/// Upper bound of any wait in the harness; every wait ends as soon as its condition holds.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it gives a value, failing the test after [`DEADLINE`] with `what`.
pub async fn eventually<T, F, Fut>(what: impl Display, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
