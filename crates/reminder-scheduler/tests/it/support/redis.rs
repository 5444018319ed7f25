//! A `redis-server` owned by one test (`service_testing::RedisServer`): `resources()` puts
//! `todo-state` on it (`state.redis`), `streams(&[])` the pub/sub too (Redis Streams), and
//! `kafka(&kafka_broker(), &[])` the pub/sub on a tansu broker of the test's own holding
//! production's topics.

pub use service_testing::{RedisServer, kafka_broker};
