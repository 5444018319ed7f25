//! Conformance: health, metadata and the API token
//! (<https://docs.dapr.io/reference/api/health_api/>,
//! <https://docs.dapr.io/reference/api/metadata_api/>,
//! <https://docs.dapr.io/operations/security/api-token/>), plus the
//! daprd-compatible command line of the binary.
//!
//! The scenarios are in `support/scenarios_api.rs`; `conformance_redis.rs` runs them on
//! Redis components.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use support::Backend;
use support::scenarios_api as scenarios;

#[tokio::test]
async fn healthz_waits_for_the_app_port_but_outbound_does_not() {
    scenarios::healthz_waits_for_the_app_port_but_outbound_does_not(&Backend::InMemory).await;
}

#[tokio::test]
async fn metadata_shape() {
    scenarios::metadata_shape(&Backend::InMemory).await;
}

#[tokio::test]
async fn api_token_protects_everything_but_healthz() {
    scenarios::api_token_protects_everything_but_healthz(&Backend::InMemory).await;
}

#[tokio::test]
async fn body_limit_follows_max_body_size() {
    scenarios::body_limit_follows_max_body_size(&Backend::InMemory).await;
}

#[tokio::test]
async fn port_in_use_is_a_clear_error() {
    scenarios::port_in_use_is_a_clear_error(&Backend::InMemory).await;
}

#[tokio::test]
async fn unsupported_daprd_flags_fail_naming_the_flag() {
    scenarios::unsupported_daprd_flags_fail_naming_the_flag(&Backend::InMemory).await;
}

#[tokio::test]
async fn go_style_flags_and_default_valued_unsupported_flags_are_accepted() {
    scenarios::go_style_flags_and_default_valued_unsupported_flags_are_accepted(&Backend::InMemory)
        .await;
}

#[tokio::test]
async fn sigterm_stops_the_sidecar_cleanly() {
    scenarios::sigterm_stops_the_sidecar_cleanly(&Backend::InMemory).await;
}

#[tokio::test]
async fn error_bodies_have_daprds_shape_per_error() {
    scenarios::error_bodies_have_daprds_shape_per_error(&Backend::InMemory).await;
}

#[tokio::test]
async fn metadata_keeps_the_fields_daprd_never_omits() {
    scenarios::metadata_keeps_the_fields_daprd_never_omits(&Backend::InMemory).await;
}
