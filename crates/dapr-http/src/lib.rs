//! A small client for the Dapr sidecar's HTTP API and the app-side subscription router.
//!
//! * [`DaprClient`]: publish envelopes (with CloudEvent id/type and partition key taken from the
//!   envelope, retried with jittered backoff on connection errors and 5xx), read and write state
//!   with etags, TTLs and transactions, and wait for the sidecar's outbound health.
//! * [`DaprError`]: typed errors keyed on daprd's HTTP status and `errorCode`.
//! * [`Subscriptions`]: the table of topics an app consumes, served as `GET /dapr/subscribe` plus
//!   one POST route per topic, with typed [`Event`]s in and [`Outcome`]s out, one at a time or
//!   in batches (bulk subscribe, [`BulkSubscribe`]).
//!
//! * [`spans`]: W3C trace context in and out of `tracing` spans, and the client span of every
//!   sidecar call when the process exports traces.
//!
//! Settings come from the variables daprd's tooling gives an app ([`DaprSettings::from_env`]).
//! The API token is a [`secrecy::SecretString`] and is never logged.

mod batch;
mod client;
mod delivery;
mod error;
mod publish;
mod settings;
pub mod spans;
mod state;
mod state_write;
mod subscribe;
mod token;

pub use batch::BulkSubscribe;
pub use client::DaprClient;
pub use delivery::{Event, Outcome, RawEvent};
pub use error::DaprError;
pub use publish::PublishOptions;
pub use settings::{DEFAULT_HOST, DEFAULT_HTTP_PORT, DaprSettings, RetryPolicy, SettingsError};
pub use state::{BulkStateItem, StateEntry};
pub use state_write::{Concurrency, SaveItem, TransactionOp};
pub use subscribe::{SubscriptionSpec, Subscriptions, route_for};
pub use token::constant_time_eq;

/// Re-exported so callers can build tokens without naming the crate version.
pub use secrecy::SecretString;
