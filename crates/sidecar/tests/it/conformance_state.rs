//! Conformance: the state API status matrix with Redis semantics: the state handlers of daprd's
//! `pkg/api/http/http.go` over components-contrib's `state/redis/redis.go`, documented at
//! <https://docs.dapr.io/reference/api/state_api/>.
//!
//! The scenarios are in `support/scenarios_state.rs`; `conformance_redis.rs` runs them on
//! Redis components.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use support::Backend;
use support::scenarios_state as scenarios;

#[tokio::test]
async fn save_get_delete_happy_path() {
    scenarios::save_get_delete_happy_path(&Backend::InMemory).await;
}

#[tokio::test]
async fn path_keys_are_percent_decoded() {
    scenarios::path_keys_are_percent_decoded(&Backend::InMemory).await;
}

#[tokio::test]
async fn etag_mismatch_and_invalid_etag() {
    scenarios::etag_mismatch_and_invalid_etag(&Backend::InMemory).await;
}

#[tokio::test]
async fn bulk_get_uses_the_data_field() {
    scenarios::bulk_get_uses_the_data_field(&Backend::InMemory).await;
}

#[tokio::test]
async fn transactions() {
    scenarios::transactions(&Backend::InMemory).await;
}

#[tokio::test]
async fn request_errors() {
    scenarios::request_errors(&Backend::InMemory).await;
}

#[tokio::test]
async fn first_write_marker_follows_redis() {
    scenarios::first_write_marker_follows_redis(&Backend::InMemory).await;
}

#[tokio::test]
async fn ttl_expires_keys() {
    scenarios::ttl_expires_keys(&Backend::InMemory).await;
}

#[tokio::test]
async fn multi_item_save_with_an_etag_failure_is_409() {
    scenarios::multi_item_save_with_an_etag_failure_is_409(&Backend::InMemory).await;
}

/// Not in Dapr's contract (daprd's stores are remote): what an in-memory store holds for the
/// app, by key family, and the memory the whole store holds it in, on `GET /metrics`.
#[tokio::test]
async fn in_memory_usage_is_on_metrics_by_family_with_the_stores_memory() {
    use support::{COMPONENTS, STATE, Sidecar, SidecarSpec, http, metrics, resources_dir};
    let resources = resources_dir(&[("c.yaml", COMPONENTS)]);
    let sc = Sidecar::start(SidecarSpec {
        app_id: "usage".into(),
        resources: vec![resources.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    let value = |page: &str, prefix: &str| -> Option<u64> {
        page.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.parse().unwrap())
    };
    let reserved = format!("sidecar_state_reserved_bytes{{store=\"{STATE}\"}}");
    assert_eq!(
        value(&metrics(&sc.base).await, &reserved),
        Some(0),
        "nothing stored yet"
    );

    let items: Vec<serde_json::Value> = (0..50)
        .map(|i| serde_json::json!({"key": format!("order:{i}"), "value": {"n": i}}))
        .collect();
    let r = http()
        .post(sc.url(&format!("/v1.0/state/{STATE}")))
        .json(&items)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let page = metrics(&sc.base).await;
    let family = format!("{{app_id=\"usage\",store=\"{STATE}\",family=\"order:*\"}}");
    assert_eq!(
        value(&page, &format!("sidecar_state_keys{family}")),
        Some(50),
        "{page}"
    );
    let bytes = value(&page, &format!("sidecar_state_bytes{family}")).unwrap();
    assert!(bytes >= 50 * "order:0".len() as u64, "{page}");
    let held = value(&page, &reserved).unwrap();
    assert!(held >= bytes, "the store's memory holds the keys: {page}");
}
