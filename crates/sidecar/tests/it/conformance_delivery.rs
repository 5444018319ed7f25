//! Conformance: subscribing and delivery, as the Dapr docs describe them:
//! <https://docs.dapr.io/reference/api/pubsub_api/>,
//! <https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-deadletter/>, and
//! for the app token <https://docs.dapr.io/operations/security/app-api-token/>.
//!
//! The scenarios are in `support/scenarios_delivery.rs`; `conformance_redis.rs` runs them on
//! Redis components.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use support::Backend;
use support::scenarios_delivery as scenarios;

#[tokio::test]
async fn response_interpretation_table() {
    scenarios::response_interpretation_table(&Backend::InMemory).await;
}

#[tokio::test]
async fn without_a_retry_policy_the_first_failure_goes_to_the_dead_letter_topic() {
    scenarios::without_a_retry_policy_the_first_failure_goes_to_the_dead_letter_topic(
        &Backend::InMemory,
    )
    .await;
}

#[tokio::test]
async fn subscribe_is_retried_after_transport_errors_until_200() {
    scenarios::subscribe_is_retried_after_transport_errors_until_200(&Backend::InMemory).await;
}

#[tokio::test]
async fn a_non_200_subscribe_answer_gives_no_subscriptions() {
    scenarios::a_non_200_subscribe_answer_gives_no_subscriptions(&Backend::InMemory).await;
}

#[tokio::test]
async fn route_rules_use_cel_over_the_cloudevent() {
    scenarios::route_rules_use_cel_over_the_cloudevent(&Backend::InMemory).await;
}

#[tokio::test]
async fn app_token_is_sent_on_subscribe_and_deliveries() {
    scenarios::app_token_is_sent_on_subscribe_and_deliveries(&Backend::InMemory).await;
}

#[tokio::test]
async fn drop_without_a_dead_letter_topic_is_acked_not_redelivered() {
    scenarios::drop_without_a_dead_letter_topic_is_acked_not_redelivered(&Backend::InMemory).await;
}

#[tokio::test]
async fn an_event_matching_no_rule_is_dead_lettered() {
    scenarios::an_event_matching_no_rule_is_dead_lettered(&Backend::InMemory).await;
}

#[tokio::test]
async fn an_event_published_before_the_subscriber_ever_ran() {
    scenarios::an_event_published_before_the_subscriber_ever_ran(&Backend::InMemory).await;
}
