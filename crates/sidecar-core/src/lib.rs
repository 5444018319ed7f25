//! The local Dapr-API-compatible sidecar as a library: everything one sidecar does between its
//! resource files and its app. Command lines, run files and processes are the `sidecar` crate's
//! job, Redis is `sidecar-redis`'s, Kafka `sidecar-kafka`'s, and the test harness is
//! `sidecar-testing`.
//!
//! It stands in for `daprd` in development and tests: it loads Dapr component, subscription and
//! resiliency YAML, hosts in-memory state and pub/sub components shared by every sidecar of one
//! [`Runtime`] (so a multi-app run behaves like several apps on one broker), serves the Dapr HTTP
//! API with daprd's statuses and bodies, and delivers CloudEvents to the app exactly the way daprd
//! does (programmatic and declarative subscriptions, CEL routing, response interpretation,
//! resiliency retries, dead letters).
//!
//! Entry points: [`load_resources`], [`Runtime::new`] with a component [`Registry`] (the
//! built-ins plus whatever other crates register), and [`start_sidecar`].
//!
//! # Layers
//!
//! A module uses only modules of its own layer listed before it, or of earlier layers:
//!
//! 1. [`go`] (Go-compatible parsing), [`scopes`] (topic access rules), [`acl`] (invocation
//!    access control);
//! 2. [`resources`] (resource files), [`metadata`] (request metadata, state keys),
//!    [`cloudevent`] (envelopes), [`observe`] (the tap on publishes and deliveries);
//! 3. [`components`]: component traits, the built-in components and the [`Registry`];
//! 4. [`secretstores`] (`secretKeyRef` resolution), [`runtime`] (components of a run, app
//!    channels);
//! 5. [`otel`] (the sidecar's own spans, when its Configuration enables tracing), [`options`],
//!    [`subscriptions`], [`policies`] (resiliency of one sidecar), [`sidecar`] (the
//!    state one sidecar shares);
//! 6. [`tokens`], [`app_health`], [`api`], [`invoke`], [`delivery`]: what a running sidecar does;
//! 7. `lifecycle` (start and stop sequences), `app_subscriptions` (stopping and restarting all of
//!    an app's subscriptions with its health), [`inspect`] (read-only views of a sidecar) and
//!    [`server`] (binding, routing, handles).
//!
//! # Behaviour worth knowing
//!
//! * `state.in-memory` copies `state.redis` (production's store), not Dapr's own in-memory store:
//!   integer ETags, save-with-etag on an absent key creates it, the first-write marker, delete of
//!   an absent key always succeeds, TTL kept when a later write gives none, transactions without
//!   rollback.
//! * Delivery follows daprd: without a resiliency policy daprd itself does not retry, so a failed
//!   delivery goes straight to the dead-letter topic when there is one. Otherwise it goes back to
//!   the broker, and `pubsub.in-memory` redelivers it after 100 ms, doubling up to 5 s, until it
//!   succeeds or the run stops (there is no broker process to reclaim it, unlike Redis'
//!   `processingTimeout`).
//! * Resiliency as daprd applies it ([`policies`], the `resiliency` crate): timeouts, retries
//!   and circuit breakers for deliveries (inbound), publishes, dead-letter publishes and state
//!   calls (outbound) and service invocations (per target app and method); breaker states on
//!   `GET /metrics`.
//! * `pubsub.in-memory` consumer groups: group = app id (or the `consumerID` metadata, with
//!   `{appID}`/`{uuid}`/`{namespace}` resolved per sidecar). Different groups fan out; sidecars of
//!   one group compete. A new group does not see earlier messages; there is no ordering. A group
//!   with no subscriber for five minutes is dropped with its queue (Dapr's own in-memory broker
//!   keeps nothing for absent subscribers; see `components/pubsub_memory.rs`).
//! * Memory stays bounded: expired `state.in-memory` keys are evicted (not only hidden) and the
//!   key table gives its memory back after a burst of them; a kept key costs one table slot
//!   and one allocation of its key (app prefix and UUIDs held short), version, expiry and
//!   value, the value zstd-compressed with a dictionary made of the store's first values when
//!   that saves an eighth (`components/state_memory/`); the
//!   extended metadata of `PUT /v1.0/metadata/{key}` is capped (`api/meta.rs`), and
//!   service invocation has a response size cap and a per-call deadline ([`invoke`]).
//! * A sidecar reports ready on `/v1.0/healthz` only after the app port accepts connections and
//!   its subscriptions are registered, so nothing is delivered before routes are known; with
//!   app health checks on and an app that fails its first probe, it reports ready at once, as
//!   daprd does, and subscribes at the first successful probe.
//! * App health checks (`--enable-app-health-check`, run-file `enableAppHealthCheck`) as daprd:
//!   the app is unhealthy until its first successful probe (only then is `/dapr/subscribe` read)
//!   and after `threshold` failed probes counted since it last turned healthy; while it is
//!   unhealthy all its subscriptions are stopped (messages wait in its consumer group),
//!   deliveries still in flight fail fast and go back to the broker, and invocations of it fail
//!   with `ERR_DIRECT_INVOKE` (see [`app_health`]). Healthy again, the subscriptions loaded the
//!   first time are registered anew.
//! * Service invocation access control (`spec.accessControl` of the Configuration given with
//!   `--config`) is applied by the called app's sidecar, with the caller's identity known for
//!   certain (as daprd with mTLS); see [`acl`].
//! * Tracing (`spec.tracing` of the Configuration): with an OTLP/HTTP endpoint and a sampling
//!   rate other than `"0"`, each sidecar exports daprd's spans of its API calls and deliveries
//!   under its app id ([`otel`]); a bulk publish's per-entry spans and Zipkin export are left out.
//! * Bulk subscribe (`bulkSubscribe`, programmatic and declarative) on every component, batched
//!   in the delivery layer as daprd's default bulk subscriber does (see `delivery::bulk`), with
//!   per-entry statuses, retries of the failed entries only, and per-entry dead letters. The
//!   batch waits from its first entry rather than on a fixed ticker, and a bulk subscription
//!   lets up to `maxMessagesCount` messages wait at once (so batches can fill), while the app
//!   still gets at most `concurrency` POSTs at a time.
//! * A run's publishes and delivery attempts can be watched through [`observe`] (the runner's
//!   console does); with no observer installed that costs one atomic load per call site.
//! * Not implemented: the outbox, actors, gRPC.

pub mod acl;
pub mod api;
pub mod app_health;
mod app_subscriptions;
pub mod cloudevent;
pub mod components;
pub mod delivery;
pub mod go;
mod http_server;
pub mod inspect;
pub mod invoke;
mod lifecycle;
pub mod metadata;
pub mod observe;
pub mod options;
pub mod otel;
pub mod policies;
pub mod ports;
pub mod resources;
pub mod runtime;
pub mod scopes;
pub mod secretstores;
pub mod server;
pub mod sidecar;
pub mod subscriptions;
pub mod tokens;

pub use components::Registry;
pub use options::SidecarOptions;
pub use resources::{ResourceError, Resources, load_resources};
pub use runtime::Runtime;
pub use server::{SidecarHandle, StartError, start_sidecar};

/// Runtime version reported by `GET /v1.0/metadata` (the daprd line this sidecar follows).
pub const RUNTIME_VERSION: &str = "1.16.19-local";
