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

use serde_json::Value;
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

/// daprd stores every `PUT /v1.0/metadata/{key}` (pkg/api/universal/metadata.go, `SetMetadata`)
/// without limits; this sidecar caps entries and sizes so a chatty client cannot grow it forever.
#[tokio::test]
async fn extended_metadata_is_capped_in_entries_and_sizes() {
    use support::{Sidecar, SidecarSpec, assert_error, http};
    let sc = Sidecar::start(SidecarSpec {
        app_id: "meta-cap".into(),
        ..SidecarSpec::default()
    })
    .await;
    let put = |key: String, value: String| {
        let req = http()
            .put(sc.url(&format!("/v1.0/metadata/{key}")))
            .body(value);
        async move { req.send().await.unwrap() }
    };
    let r = put("k".repeat(257), "v".into()).await;
    let body = assert_error(r, 400, "ERR_MALFORMED_REQUEST").await;
    assert!(body["message"].as_str().unwrap().contains("256"), "{body}");
    let r = put("big".into(), "v".repeat(16 * 1024 + 1)).await;
    assert_error(r, 400, "ERR_MALFORMED_REQUEST").await;
    for i in 0..128 {
        assert_eq!(
            put(format!("k{i}"), "v".into()).await.status(),
            204,
            "entry {i}"
        );
    }
    let r = put("one-too-many".into(), "v".into()).await;
    let body = assert_error(r, 400, "ERR_MALFORMED_REQUEST").await;
    assert!(body["message"].as_str().unwrap().contains("128"), "{body}");
    assert_eq!(
        put("k0".into(), "replaced".into()).await.status(),
        204,
        "an existing key may always be replaced"
    );
    let m: Value = http()
        .get(sc.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let extended = m["extended"].as_object().unwrap();
    // daprd always adds its own `daprRuntimeVersion` beside the app's entries.
    let entries = extended
        .keys()
        .filter(|key| *key != "daprRuntimeVersion")
        .count();
    assert_eq!(entries, 128);
    assert_eq!(extended["k0"], "replaced");
}
