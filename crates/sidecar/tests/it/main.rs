//! One test binary for the crate's integration tests (one link instead of one per file keeps the
//! build small and quick); each module is one area, sharing the harnesses in `support`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod support_redis;

mod access_control;
mod app_health;
mod conformance_api;
mod conformance_bulk;
mod conformance_delivery;
mod conformance_kafka;
mod conformance_publish;
mod conformance_redis;
mod conformance_state;
mod console;
mod deploy_scopes;
mod kafka_auth;
mod kafka_backpressure;
mod kafka_pubsub;
mod multi_app;
mod multi_app_scale;
mod redis_deploy;
mod redis_durability;
mod redis_pubsub;
mod redis_restart;
mod redis_secrets;
mod redis_state;
mod redis_vs_memory;
mod resiliency_outbound;
mod resiliency_rules;
mod resiliency_shipped;
