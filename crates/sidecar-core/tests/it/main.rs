//! Integration tests of the sidecar core over real HTTP: sidecars from the test harness and
//! in-test axum apps on random ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod invocation_limits;
mod observe;
mod pubsub;
mod routing;
mod security;
mod state;
mod zipkin;
