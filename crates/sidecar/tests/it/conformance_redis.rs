//! The conformance scenarios (`support/scenarios_*.rs`) on Redis components: `pubsub.redis` and
//! `state.redis` on a `redis-server` of each test's own. Where the brokers genuinely differ, the
//! scenario asserts each backend's behaviour. (The command-line scenarios that load no component
//! run only in `conformance_api.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;
use crate::support_redis;

use support::Backend;
use support_redis::RedisServer;

mod api {
    use super::*;
    use support::scenarios_api as scenarios;

    #[tokio::test]
    async fn healthz_waits_for_the_app_port_but_outbound_does_not() {
        let redis = RedisServer::start();
        scenarios::healthz_waits_for_the_app_port_but_outbound_does_not(&Backend::redis(
            redis.port(),
        ))
        .await;
    }

    #[tokio::test]
    async fn metadata_shape() {
        let redis = RedisServer::start();
        scenarios::metadata_shape(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn api_token_protects_everything_but_healthz() {
        let redis = RedisServer::start();
        scenarios::api_token_protects_everything_but_healthz(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn body_limit_follows_max_body_size() {
        let redis = RedisServer::start();
        scenarios::body_limit_follows_max_body_size(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn go_style_flags_and_default_valued_unsupported_flags_are_accepted() {
        let redis = RedisServer::start();
        scenarios::go_style_flags_and_default_valued_unsupported_flags_are_accepted(
            &Backend::redis(redis.port()),
        )
        .await;
    }

    #[tokio::test]
    async fn sigterm_stops_the_sidecar_cleanly() {
        let redis = RedisServer::start();
        scenarios::sigterm_stops_the_sidecar_cleanly(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn error_bodies_have_daprds_shape_per_error() {
        let redis = RedisServer::start();
        scenarios::error_bodies_have_daprds_shape_per_error(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn metadata_keeps_the_fields_daprd_never_omits() {
        let redis = RedisServer::start();
        scenarios::metadata_keeps_the_fields_daprd_never_omits(&Backend::redis(redis.port())).await;
    }
}

mod delivery {
    use super::*;
    use support::scenarios_delivery as scenarios;

    #[tokio::test]
    async fn response_interpretation_table() {
        let redis = RedisServer::start();
        scenarios::response_interpretation_table(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn without_a_retry_policy_the_first_failure_goes_to_the_dead_letter_topic() {
        let redis = RedisServer::start();
        scenarios::without_a_retry_policy_the_first_failure_goes_to_the_dead_letter_topic(
            &Backend::redis(redis.port()),
        )
        .await;
    }

    #[tokio::test]
    async fn subscribe_is_retried_after_transport_errors_until_200() {
        let redis = RedisServer::start();
        scenarios::subscribe_is_retried_after_transport_errors_until_200(&Backend::redis(
            redis.port(),
        ))
        .await;
    }

    #[tokio::test]
    async fn a_non_200_subscribe_answer_gives_no_subscriptions() {
        let redis = RedisServer::start();
        scenarios::a_non_200_subscribe_answer_gives_no_subscriptions(&Backend::redis(redis.port()))
            .await;
    }

    #[tokio::test]
    async fn route_rules_use_cel_over_the_cloudevent() {
        let redis = RedisServer::start();
        scenarios::route_rules_use_cel_over_the_cloudevent(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn app_token_is_sent_on_subscribe_and_deliveries() {
        let redis = RedisServer::start();
        scenarios::app_token_is_sent_on_subscribe_and_deliveries(&Backend::redis(redis.port()))
            .await;
    }

    #[tokio::test]
    async fn drop_without_a_dead_letter_topic_is_acked_not_redelivered() {
        let redis = RedisServer::start();
        scenarios::drop_without_a_dead_letter_topic_is_acked_not_redelivered(&Backend::redis(
            redis.port(),
        ))
        .await;
    }

    #[tokio::test]
    async fn an_event_matching_no_rule_is_dead_lettered() {
        let redis = RedisServer::start();
        scenarios::an_event_matching_no_rule_is_dead_lettered(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn an_event_published_before_the_subscriber_ever_ran() {
        let redis = RedisServer::start();
        scenarios::an_event_published_before_the_subscriber_ever_ran(&Backend::redis(redis.port()))
            .await;
    }
}

mod publish {
    use super::*;
    use support::scenarios_publish as scenarios;

    #[tokio::test]
    async fn json_publish_is_wrapped_field_by_field() {
        let redis = RedisServer::start();
        scenarios::json_publish_is_wrapped_field_by_field(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn datacontenttype_is_passed_through_verbatim() {
        let redis = RedisServer::start();
        scenarios::datacontenttype_is_passed_through_verbatim(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn invalid_json_and_vendor_json_become_strings() {
        let redis = RedisServer::start();
        scenarios::invalid_json_and_vendor_json_become_strings(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn binary_content_goes_to_data_base64() {
        let redis = RedisServer::start();
        scenarios::binary_content_goes_to_data_base64(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn cloudevent_metadata_overrides() {
        let redis = RedisServer::start();
        scenarios::cloudevent_metadata_overrides(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn raw_payload_is_delivered_unwrapped() {
        let redis = RedisServer::start();
        scenarios::raw_payload_is_delivered_unwrapped(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn own_cloudevent_passes_through_with_daprs_edits() {
        let redis = RedisServer::start();
        scenarios::own_cloudevent_passes_through_with_daprs_edits(&Backend::redis(redis.port()))
            .await;
    }

    #[tokio::test]
    async fn ttl_sets_expiration_and_expired_events_are_dead_lettered_not_delivered() {
        let redis = RedisServer::start();
        scenarios::ttl_sets_expiration_and_expired_events_are_dead_lettered_not_delivered(
            &Backend::redis(redis.port()),
        )
        .await;
    }

    #[tokio::test]
    async fn publish_errors() {
        let redis = RedisServer::start();
        scenarios::publish_errors(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn topic_may_contain_slashes() {
        let redis = RedisServer::start();
        scenarios::topic_may_contain_slashes(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn bulk_publish_wraps_each_entry() {
        let redis = RedisServer::start();
        scenarios::bulk_publish_wraps_each_entry(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn json_numbers_keep_their_literals() {
        let redis = RedisServer::start();
        scenarios::json_numbers_keep_their_literals(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn data_placement_edge_cases() {
        let redis = RedisServer::start();
        scenarios::data_placement_edge_cases(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn ttl_metadata_follows_try_get_ttl() {
        let redis = RedisServer::start();
        scenarios::ttl_metadata_follows_try_get_ttl(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn empty_raw_payload_means_false() {
        let redis = RedisServer::start();
        scenarios::empty_raw_payload_means_false(&Backend::redis(redis.port())).await;
    }
}

mod state {
    use super::*;
    use support::scenarios_state as scenarios;

    #[tokio::test]
    async fn save_get_delete_happy_path() {
        let redis = RedisServer::start();
        scenarios::save_get_delete_happy_path(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn path_keys_are_percent_decoded() {
        let redis = RedisServer::start();
        scenarios::path_keys_are_percent_decoded(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn etag_mismatch_and_invalid_etag() {
        let redis = RedisServer::start();
        scenarios::etag_mismatch_and_invalid_etag(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn bulk_get_uses_the_data_field() {
        let redis = RedisServer::start();
        scenarios::bulk_get_uses_the_data_field(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn transactions() {
        let redis = RedisServer::start();
        scenarios::transactions(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn request_errors() {
        let redis = RedisServer::start();
        scenarios::request_errors(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn first_write_marker_follows_redis() {
        let redis = RedisServer::start();
        scenarios::first_write_marker_follows_redis(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn ttl_expires_keys() {
        let redis = RedisServer::start();
        scenarios::ttl_expires_keys(&Backend::redis(redis.port())).await;
    }

    #[tokio::test]
    async fn multi_item_save_with_an_etag_failure_is_409() {
        let redis = RedisServer::start();
        scenarios::multi_item_save_with_an_etag_failure_is_409(&Backend::redis(redis.port())).await;
    }
}

mod bulk {
    use super::*;
    use support::scenarios_bulk as scenarios;

    #[tokio::test]
    async fn batches_flush_at_max_messages_or_after_max_await() {
        let redis = RedisServer::start();
        scenarios::batches_flush_at_max_messages_or_after_max_await(&Backend::redis(redis.port()))
            .await;
    }

    #[tokio::test]
    async fn the_next_batch_fills_and_goes_while_the_app_holds_one() {
        let redis = RedisServer::start();
        scenarios::the_next_batch_fills_and_goes_while_the_app_holds_one(&Backend::redis(
            redis.port(),
        ))
        .await;
    }

    #[tokio::test]
    async fn partial_failures_retry_only_failed_entries_and_dead_letter_each() {
        let redis = RedisServer::start();
        scenarios::partial_failures_retry_only_failed_entries_and_dead_letter_each(
            &Backend::redis(redis.port()),
        )
        .await;
    }

    #[tokio::test]
    async fn a_batch_answered_too_slowly_or_badly_fails_every_entry() {
        let redis = RedisServer::start();
        scenarios::a_batch_answered_too_slowly_or_badly_fails_every_entry(&Backend::redis(
            redis.port(),
        ))
        .await;
    }

    #[tokio::test]
    async fn declarative_bulk_subscription() {
        let redis = RedisServer::start();
        scenarios::declarative_bulk_subscription(&Backend::redis(redis.port())).await;
    }
}
