//! What the worker's consumer groups have read and acknowledged on a Redis Streams pub/sub
//! (`service_testing::RedisServer::streams`).

use std::collections::HashMap;

use redis::Value;
use service_testing::RedisServer;

/// Questions about consumer groups on a test's `redis-server`.
pub trait ConsumerGroups {
    /// Entries of `stream` delivered to `group` and not acknowledged yet, with how many times
    /// each was delivered.
    fn pending(&self, stream: &str, group: &str) -> Vec<(String, u64)>;
    /// Whether `group` has read `stream` to its end and acknowledged every entry.
    fn group_done(&self, stream: &str, group: &str) -> bool;
}

impl ConsumerGroups for RedisServer {
    fn pending(&self, stream: &str, group: &str) -> Vec<(String, u64)> {
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(10_000)
            .query(&mut connection(self))
            .unwrap_or_default();
        rows.into_iter()
            .map(|(id, _consumer, _idle, delivered)| (id, delivered))
            .collect()
    }

    fn group_done(&self, stream: &str, group: &str) -> bool {
        let groups: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query(&mut connection(self))
            .unwrap_or_default();
        let number = |g: &HashMap<String, Value>, key: &str| {
            g.get(key)
                .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
        };
        groups.iter().any(|g| {
            g.get("name")
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                .is_some_and(|name| name == group)
                && number(g, "pending") == Some(0)
                && number(g, "lag") == Some(0)
        })
    }
}

fn connection(server: &RedisServer) -> redis::Connection {
    redis::Client::open(format!("redis://{}/", server.address()))
        .and_then(|client| client.get_connection())
        .unwrap()
}
