//! daprd's resiliency engine for the local sidecar: `kind: Resiliency` resources ([`decode`]),
//! their merge and the selection of a target's policies ([`merge`]), retry backoff
//! ([`backoff`]), circuit breakers ([`breaker`]), running a call under its policies
//! ([`runner`]), and the breaker instances of one sidecar with their metrics ([`engine`]).
//!
//! Every rule follows daprd 1.16 (`pkg/resiliency/*` of dapr/dapr, dapr/kit `retry`,
//! sony/gobreaker v0.5.0); the module docs cite the function each one comes from. The crate
//! knows nothing of HTTP, components or apps: callers classify their errors
//! ([`runner::ErrorClass`]) and map a [`runner::Failure`] to their own answers.

pub mod backoff;
pub mod breaker;
pub mod decode;
pub mod duration;
pub mod engine;
pub mod merge;
pub mod policy;
pub mod runner;

pub use breaker::{Breaker, BreakerState, Rejection};
pub use engine::{AppPolicy, Engine};
pub use merge::{ComponentCall, PolicySet, Selected};
pub use policy::{BreakerPolicy, DecodeError, Resource, RetryKind, RetryPolicy};
pub use runner::{ErrorClass, Failure, Runner};

#[cfg(test)]
mod tests;
