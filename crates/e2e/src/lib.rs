//! End-to-end test support: runs the real binaries (`target/debug/<bin>`) the way a person does,
//! through `sidecar run -f <run file>`, with a run file derived from the repository's `dapr.yaml`
//! (free ports, absolute paths, test-specific settings), a real SMTP server that records what it
//! receives, an OTLP/HTTP receiver that records the spans exported to it ([`otlp`]), a guard that stops the whole run and checks nothing is left behind, and the runner of the
//! console's browser tests ([`browser`]).
//!
//! The binaries are not built by the tests: `cargo test` builds only test targets of this crate,
//! so `cargo build --workspace --bins` must run first (`scripts/test.sh` does).

pub mod binaries;
pub mod browser;
pub mod kafka;
pub mod otlp;
pub mod poll;
pub mod processes;
pub mod redis;
pub mod respawn;
pub mod runfile;
pub mod system;

pub use binaries::{Binaries, MissingBinary};
pub use browser::{BrowserSetupError, BrowserTests, ScriptRun};
pub use kafka::kafka_resources;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use poll::poll_until;
pub use redis::RedisServer;
pub use respawn::LaunchSpec;
pub use runfile::{AppPorts, RunFile};
pub use service_testing::KafkaBroker;
pub use smtp_sink::{Received, SmtpSink};
pub use system::System;
