//! Conformance: the publish API (<https://docs.dapr.io/reference/api/pubsub_api/>) and the
//! CloudEvent the broker carries (`NewCloudEvent` in daprd's `pkg/runtime/pubsub/cloudevents.go`).
//!
//! The sidecar runs as a real process; what the broker holds is observed the way an app observes
//! it: the body of the delivery (daprd delivers the stored bytes unchanged: `Deliver` in
//! `pkg/runtime/subscription/postman/http/http.go`).
//!
//! The scenarios are in `support/scenarios_publish.rs`; `conformance_redis.rs` runs them on
//! Redis components.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use support::Backend;
use support::scenarios_publish as scenarios;

#[tokio::test]
async fn json_publish_is_wrapped_field_by_field() {
    scenarios::json_publish_is_wrapped_field_by_field(&Backend::InMemory).await;
}

#[tokio::test]
async fn datacontenttype_is_passed_through_verbatim() {
    scenarios::datacontenttype_is_passed_through_verbatim(&Backend::InMemory).await;
}

#[tokio::test]
async fn invalid_json_and_vendor_json_become_strings() {
    scenarios::invalid_json_and_vendor_json_become_strings(&Backend::InMemory).await;
}

#[tokio::test]
async fn binary_content_goes_to_data_base64() {
    scenarios::binary_content_goes_to_data_base64(&Backend::InMemory).await;
}

#[tokio::test]
async fn cloudevent_metadata_overrides() {
    scenarios::cloudevent_metadata_overrides(&Backend::InMemory).await;
}

#[tokio::test]
async fn raw_payload_is_delivered_unwrapped() {
    scenarios::raw_payload_is_delivered_unwrapped(&Backend::InMemory).await;
}

#[tokio::test]
async fn own_cloudevent_passes_through_with_daprs_edits() {
    scenarios::own_cloudevent_passes_through_with_daprs_edits(&Backend::InMemory).await;
}

#[tokio::test]
async fn ttl_sets_expiration_and_expired_events_are_dead_lettered_not_delivered() {
    scenarios::ttl_sets_expiration_and_expired_events_are_dead_lettered_not_delivered(
        &Backend::InMemory,
    )
    .await;
}

#[tokio::test]
async fn publish_errors() {
    scenarios::publish_errors(&Backend::InMemory).await;
}

#[tokio::test]
async fn topic_may_contain_slashes() {
    scenarios::topic_may_contain_slashes(&Backend::InMemory).await;
}

#[tokio::test]
async fn bulk_publish_wraps_each_entry() {
    scenarios::bulk_publish_wraps_each_entry(&Backend::InMemory).await;
}

#[tokio::test]
async fn json_numbers_keep_their_literals() {
    scenarios::json_numbers_keep_their_literals(&Backend::InMemory).await;
}

#[tokio::test]
async fn data_placement_edge_cases() {
    scenarios::data_placement_edge_cases(&Backend::InMemory).await;
}

#[tokio::test]
async fn ttl_metadata_follows_try_get_ttl() {
    scenarios::ttl_metadata_follows_try_get_ttl(&Backend::InMemory).await;
}

#[tokio::test]
async fn empty_raw_payload_means_false() {
    scenarios::empty_raw_payload_means_false(&Backend::InMemory).await;
}
