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
