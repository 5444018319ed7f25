//! The components the conformance scenarios run on: the in-memory ones, the Redis ones
//! (`pubsub.redis`, `state.redis`) on a given local `redis-server`, or `pubsub.kafka` on a given
//! local Kafka-protocol broker with in-memory state. Every set has the same component names and
//! settings, so every scenario reads the same on each.

/// Which brokers and stores the sidecar under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    InMemory,
    /// A `redis-server` on 127.0.0.1 at this port, owned by the test.
    Redis {
        port: u16,
    },
    /// A Kafka-protocol broker on 127.0.0.1 at this port, owned by the test, holding
    /// [`KAFKA_TOPICS`].
    Kafka {
        port: u16,
    },
}

/// Every topic the scenarios use, created on a Kafka test broker before the sidecar starts (Kafka
/// brokers in production do not create topics on first use either).
pub const KAFKA_TOPICS: &[&str] = &[
    "orders",
    "orders-dlq",
    "m",
    "t",
    "x",
    "outcomes",
    "outcomes-dlq",
    "once",
    "once-dlq",
    "later",
    "history",
    "routed",
    "picky",
    "picky-dlq",
    "any",
    "drops",
    "retries",
    "allowed-topic",
    "other-topic",
    "counted",
    "timed",
    "mixed",
    "mixed-dlq",
    "slow",
    "broken",
    "gone",
    "bulk-dlq",
    "declared",
];

/// Partitions of each scenario topic on Kafka: several, so per-partition delivery is exercised.
pub const KAFKA_PARTITIONS: u32 = 3;

/// Component-level retry of a message the app refused on Kafka: short, so a redelivery comes
/// back within a test's deadline (the default is every 5 s).
pub const KAFKA_BACKOFF: &str = "300ms";

/// Pending-entry reclaim of the Redis pub/sub: short, so a delivery the app asked to retry comes
/// back within a test's deadline (deploy/local/redis uses 60 s / 10 s).
pub const REDIS_PROCESSING_TIMEOUT: &str = "2s";
pub const REDIS_REDELIVER_INTERVAL: &str = "500ms";

impl Backend {
    pub fn redis(port: u16) -> Backend {
        Backend::Redis { port }
    }

    pub fn kafka(port: u16) -> Backend {
        Backend::Kafka { port }
    }

    pub fn is_redis(&self) -> bool {
        matches!(self, Backend::Redis { .. })
    }

    pub fn is_kafka(&self) -> bool {
        matches!(self, Backend::Kafka { .. })
    }

    /// The component type of the pub/sub components, as the metadata API reports it.
    pub fn pubsub_type(&self) -> &'static str {
        match self {
            Backend::InMemory => "pubsub.in-memory",
            Backend::Redis { .. } => "pubsub.redis",
            Backend::Kafka { .. } => "pubsub.kafka",
        }
    }

    /// The component type of the state stores.
    pub fn state_type(&self) -> &'static str {
        match self {
            Backend::InMemory | Backend::Kafka { .. } => "state.in-memory",
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
            Backend::Kafka { port } => Box::leak(kafka_components(*port).into_boxed_str()),
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

/// `initialOffset: oldest`: each test's broker is new, so a group starting at the oldest record
/// sees exactly what the test published, even when it joins after the first publish.
fn kafka_components(port: u16) -> String {
    let kafka = |name: &str, extra: &str| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  \
             type: pubsub.kafka\n  version: v1\n  metadata:\n    - name: brokers\n      value: \"127.0.0.1:{port}\"\n\
             \x20   - name: authType\n      value: none\n    - name: initialOffset\n      value: oldest\n\
             \x20   - name: backOffDuration\n      value: \"{KAFKA_BACKOFF}\"\n{extra}"
        )
    };
    let memory = |name: &str, extra: &str| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  \
             type: state.in-memory\n  version: v1\n{extra}"
        )
    };
    [
        kafka("todo-pubsub", ""),
        memory("todo-state", ""),
        memory(
            "shared-state",
            "  metadata:\n    - name: keyPrefix\n      value: none\n",
        ),
        kafka(
            "restricted-pubsub",
            "    - name: allowedTopics\n      value: \"allowed-topic\"\n",
        ),
    ]
    .join("---\n")
}
