//! Drift checks between the deployment manifests and the code.
//!
//! The manifests under `deploy/` and the run files (`dapr.yaml`, `dapr.redis.yaml`) repeat names
//! and numbers that the code owns: app ids and ports, topic names, component names, who
//! subscribes to what, dead-letter topics. Nothing at runtime compares them until an event is
//! refused by `allowedTopics` or a probe hits the wrong port in a cluster. These checks compare
//! them at test time instead.
//!
//! Every check is a function over parsed YAML ([`Manifests`]), so a test can feed it a copy of the
//! repository's files with one thing changed and see the rule fire. Each [`Violation`] names the
//! file and the [`Rule`] it breaks.

pub mod expected;
pub mod manifests;
pub mod rules;
pub mod violation;
mod yaml;

pub use expected::{Expected, Service};
pub use manifests::{LoadError, Manifests, Sources};
pub use rules::check_all;
pub use violation::{Rule, Violation};
