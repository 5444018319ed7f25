//! Conformance: bulk subscribe on the in-memory components, as the Dapr docs page "Publish and
//! subscribe to bulk messages" describes it
//! (<https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-bulk/>).
//!
//! The scenarios are in `support/scenarios_bulk.rs`; `conformance_redis.rs` and
//! `conformance_kafka.rs` run them on Redis and Kafka.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use support::Backend;
use support::scenarios_bulk as scenarios;

#[tokio::test]
async fn batches_flush_at_max_messages_or_after_max_await() {
    scenarios::batches_flush_at_max_messages_or_after_max_await(&Backend::InMemory).await;
}

#[tokio::test]
async fn the_next_batch_fills_and_goes_while_the_app_holds_one() {
    scenarios::the_next_batch_fills_and_goes_while_the_app_holds_one(&Backend::InMemory).await;
}

#[tokio::test]
async fn partial_failures_retry_only_failed_entries_and_dead_letter_each() {
    scenarios::partial_failures_retry_only_failed_entries_and_dead_letter_each(&Backend::InMemory)
        .await;
}

#[tokio::test]
async fn a_batch_answered_too_slowly_or_badly_fails_every_entry() {
    scenarios::a_batch_answered_too_slowly_or_badly_fails_every_entry(&Backend::InMemory).await;
}

#[tokio::test]
async fn declarative_bulk_subscription() {
    scenarios::declarative_bulk_subscription(&Backend::InMemory).await;
}
