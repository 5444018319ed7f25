//! The `state.redis` and `pubsub.redis` components of the local sidecar, registered into the
//! core's component [`Registry`] by [`register`].
//!
//! Both are data-compatible with daprd's: a state store written by this sidecar can be read by
//! daprd and the other way round, and the same holds for the streams and consumer groups of the
//! pub/sub.
//!
//! * [`RedisStateStore`]: one hash per key (`data`, `version`, `first-write`), written by Lua
//!   scripts that apply the ETag and first-write rules inside Redis.
//! * [`RedisPubSub`]: Redis Streams with one consumer group per app, acks on success and
//!   redelivery of pending entries after `processingTimeout`.
//!
//! Both talk to Redis through a [`redis::aio::ConnectionManager`], which reconnects after the
//! server restarts; the blocking stream reads use a dedicated connection per subscription so they
//! never stall the shared one.

mod connection;
mod pubsub;
mod scripts;
mod settings;
mod state;
mod streams;

pub use connection::Connector;
pub use pubsub::RedisPubSub;
pub use settings::RedisSettings;
pub use state::RedisStateStore;

use sidecar_core::Registry;
use std::sync::Arc;

/// Adds `state.redis` and `pubsub.redis` to `registry`.
pub fn register(registry: &mut Registry) {
    registry
        .register_state_store("state.redis", |spec| {
            Ok(Arc::new(RedisStateStore::from_spec(spec)?))
        })
        .register_pubsub("pubsub.redis", |spec| {
            Ok(Arc::new(RedisPubSub::from_spec(spec)?))
        });
}
