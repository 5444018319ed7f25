//! The components the conformance scenarios run on: the in-memory ones, or the Redis ones
//! (`pubsub.redis`, `state.redis`) on a given local `redis-server`. Both sets have the same
//! component names and settings, so every scenario reads the same on either.

/// Which brokers and stores the sidecar under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    InMemory,
    /// A `redis-server` on 127.0.0.1 at this port, owned by the test.
    Redis {
        port: u16,
    },
}

/// Pending-entry reclaim of the Redis pub/sub: short, so a delivery the app asked to retry comes
/// back within a test's deadline (deploy/local/redis uses 60 s / 10 s).
pub const REDIS_PROCESSING_TIMEOUT: &str = "2s";
pub const REDIS_REDELIVER_INTERVAL: &str = "500ms";

impl Backend {
    pub fn redis(port: u16) -> Backend {
        Backend::Redis { port }
    }

    pub fn is_redis(&self) -> bool {
        matches!(self, Backend::Redis { .. })
    }

    /// The component type of the pub/sub components, as the metadata API reports it.
    pub fn pubsub_type(&self) -> &'static str {
        match self {
            Backend::InMemory => "pubsub.in-memory",
            Backend::Redis { .. } => "pubsub.redis",
        }
    }

    /// The component type of the state stores.
    pub fn state_type(&self) -> &'static str {
        match self {
            Backend::InMemory => "state.in-memory",
            Backend::Redis { .. } => "state.redis",
        }
    }

    /// The components file: `todo-pubsub`, `todo-state`, `shared-state` (no key prefix) and
    /// `restricted-pubsub` (one allowed topic). Leaked: a test builds it a handful of times, and
    /// a `&'static str` slots in where the scenarios take file contents.
    pub fn components(&self) -> &'static str {
        match self {
            Backend::InMemory => super::COMPONENTS,
            Backend::Redis { port } => Box::leak(redis_components(*port).into_boxed_str()),
        }
    }
}

fn redis_components(port: u16) -> String {
    let host = format!("127.0.0.1:{port}");
    let component = |name: &str, kind: &str, extra: &[(&str, &str)]| {
        let mut text = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  \
             type: {kind}\n  version: v1\n  metadata:\n    - name: redisHost\n      value: \"{host}\"\n"
        );
        for (k, v) in extra {
            text.push_str(&format!("    - name: {k}\n      value: \"{v}\"\n"));
        }
        text
    };
    let reclaim = [
        ("processingTimeout", REDIS_PROCESSING_TIMEOUT),
        ("redeliverInterval", REDIS_REDELIVER_INTERVAL),
    ];
    [
        component("todo-pubsub", "pubsub.redis", &reclaim),
        component("todo-state", "state.redis", &[]),
        component("shared-state", "state.redis", &[("keyPrefix", "none")]),
        component(
            "restricted-pubsub",
            "pubsub.redis",
            &[reclaim[0], reclaim[1], ("allowedTopics", "allowed-topic")],
        ),
    ]
    .join("---\n")
}
