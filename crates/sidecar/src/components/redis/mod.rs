//! Redis-backed components, data-compatible with daprd's `state.redis` and `pubsub.redis`:
//! a state store written by this sidecar can be read by daprd and the other way round, and the
//! same holds for the streams and consumer groups of the pub/sub.
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
