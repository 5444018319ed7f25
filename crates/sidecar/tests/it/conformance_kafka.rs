//! The conformance scenarios (`support/scenarios_*.rs`) on `pubsub.kafka`: a tansu broker of each
//! test's own holding the scenario topics, with in-memory state: every scenario but the state
//! ones (they do not touch the pub/sub and run on the other backends) and the two that only parse
//! flags (no component is loaded). Where Kafka genuinely differs, the scenario
//! asserts each backend's behaviour:
//!
//! * a consumer group that starts at `initialOffset: oldest` receives events published before
//!   its app ever ran, like a new Redis consumer group;
//! * Kafka topic names allow only letters, digits, `.`, `_` and `-`, so a topic with a slash
//!   cannot be published to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use sidecar_testing::KafkaBroker;
use support::Backend;
use support::backend::{KAFKA_PARTITIONS, KAFKA_TOPICS};

/// A broker of the test's own with every scenario topic.
fn broker() -> KafkaBroker {
    let broker = KafkaBroker::start();
    broker.create_topics(KAFKA_TOPICS, KAFKA_PARTITIONS);
    broker
}

/// One `#[tokio::test]` per scenario, each on a fresh broker.
macro_rules! on_kafka {
    ($scenarios:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let broker = super::broker();
                $scenarios::$name(&Backend::kafka(broker.port())).await;
            }
        )*
    };
}

mod api {
    use super::*;
    use support::scenarios_api as scenarios;

    on_kafka!(scenarios:
        healthz_waits_for_the_app_port_but_outbound_does_not,
        metadata_shape,
        api_token_protects_everything_but_healthz,
        body_limit_follows_max_body_size,
        go_style_flags_and_default_valued_unsupported_flags_are_accepted,
        sigterm_stops_the_sidecar_cleanly,
        error_bodies_have_daprds_shape_per_error,
        metadata_keeps_the_fields_daprd_never_omits,
    );
}

mod delivery {
    use super::*;
    use support::scenarios_delivery as scenarios;

    on_kafka!(scenarios:
        response_interpretation_table,
        without_a_retry_policy_the_first_failure_goes_to_the_dead_letter_topic,
        subscribe_is_retried_after_transport_errors_until_200,
        a_non_200_subscribe_answer_gives_no_subscriptions,
        route_rules_use_cel_over_the_cloudevent,
        app_token_is_sent_on_subscribe_and_deliveries,
        drop_without_a_dead_letter_topic_is_acked_not_redelivered,
        an_event_matching_no_rule_is_dead_lettered,
        an_event_published_before_the_subscriber_ever_ran,
    );
}

mod publish {
    use super::*;
    use support::scenarios_publish as scenarios;

    on_kafka!(scenarios:
        json_publish_is_wrapped_field_by_field,
        datacontenttype_is_passed_through_verbatim,
        invalid_json_and_vendor_json_become_strings,
        binary_content_goes_to_data_base64,
        cloudevent_metadata_overrides,
        raw_payload_is_delivered_unwrapped,
        own_cloudevent_passes_through_with_daprs_edits,
        ttl_sets_expiration_and_expired_events_are_dead_lettered_not_delivered,
        publish_errors,
        topic_may_contain_slashes,
        bulk_publish_wraps_each_entry,
        json_numbers_keep_their_literals,
        data_placement_edge_cases,
        ttl_metadata_follows_try_get_ttl,
        empty_raw_payload_means_false,
    );
}

mod bulk {
    use super::*;
    use support::scenarios_bulk as scenarios;

    on_kafka!(scenarios:
        batches_flush_at_max_messages_or_after_max_await,
        partial_failures_retry_only_failed_entries_and_dead_letter_each,
        a_batch_answered_too_slowly_or_badly_fails_every_entry,
        declarative_bulk_subscription,
    );
}
