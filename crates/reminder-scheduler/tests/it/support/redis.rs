//! A `redis-server` owned by one test (`service_testing::RedisServer`): `resources()` puts
//! `todo-state` on it (`state.redis`), `streams(&[])` the pub/sub too (Redis Streams).

pub use service_testing::RedisServer;
