//! The `pubsub.kafka` component of the local sidecar, registered into the core's component
//! [`Registry`] by [`register`]. It talks to any Kafka-protocol broker (Kafka, Redpanda, tansu)
//! through librdkafka and follows the delivery rules of daprd's Kafka component
//! (components-contrib `common/component/kafka`):
//!
//! * group = `consumerGroup`, else `consumerID`, else the app id; a group without a committed
//!   offset starts at `initialOffset` (`newest` by default);
//! * each partition's records are delivered one at a time, partitions in parallel; a record the
//!   app does not accept is retried every 5 s by default, blocking only its partition; finite
//!   retries that run out skip it; only handled records are committed;
//! * a bulk subscription gets each partition's records in batches (up to `maxMessagesCount` in
//!   flight per partition), each committed once it and every record before it are settled;
//! * publishes are keyed by `partitionKey`/`__key` and placed with Sarama's FNV-1a hash
//!   ([`partitioner`]), with `acks=all` and every publish metadata entry as a record header; the
//!   app receives `__key`, `__topic`, `__partition`, `__offset`, `__timestamp` and the headers.
//!
//! Differences from daprd: each subscription is its own member of the group (daprd runs one
//! member per component covering all of an app's topics), so an app subscribed to three topics
//! shows three members; partition assignment per topic is the same.

mod backoff;
mod client;
mod consumer;
pub mod partitioner;
mod pubsub;
mod reader;
mod record;
mod refetch;
mod settings;

pub use backoff::{BackoffKind, BackoffPolicy};
pub use pubsub::KafkaPubSub;
pub use settings::{Auth, InitialOffset, KafkaSettings, Redacted, Tls};

use sidecar_core::Registry;
use std::sync::Arc;

/// Adds `pubsub.kafka` to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register_pubsub("pubsub.kafka", |spec| {
        Ok(Arc::new(KafkaPubSub::from_spec(spec)?))
    });
}
