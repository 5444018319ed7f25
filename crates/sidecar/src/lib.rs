//! The `sidecar` binary's library: a local stand-in for `daprd` (same flags) and for the Dapr CLI's
//! `dapr run -f` (multi-app run files), built on `sidecar-core` with the Redis components of
//! `sidecar-redis` and the Kafka component of `sidecar-kafka`. Its one job is running sidecars and
//! apps: the command line ([`cli`]), run files ([`runfile`]), instances of a scaled app
//! ([`scale`]), and app processes with their process groups and signals ([`runner`]).
//!
//! The crate also builds `dapr-test-app`, the small app the multi-app tests run. It stays a binary
//! of this crate because Cargo hands a package's integration tests the paths of that package's
//! own binaries only (`CARGO_BIN_EXE_<name>`), and stable Cargo has no artifact dependencies; as a
//! binary of `sidecar-testing` the tests would have to find or build it themselves.

pub mod cli;
pub mod runfile;
pub mod runner;
pub mod scale;

use sidecar_core::Registry;

/// The components every `sidecar` build can load: the core's built-ins, Redis and Kafka.
pub fn components() -> Registry {
    let mut registry = Registry::with_builtins();
    sidecar_redis::register(&mut registry);
    sidecar_kafka::register(&mut registry);
    registry
}
