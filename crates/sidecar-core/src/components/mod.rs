//! Component building blocks: the [`StateStore`], [`PubSub`] and [`SecretStore`] traits, the
//! components built into the core (`state.in-memory`, `pubsub.in-memory`,
//! `secretstores.local.env`, `secretstores.local.file`) and the [`Registry`] that builds
//! components by type.
//!
//! The traits are object safe (methods return boxed futures) so a runtime can hold
//! `Arc<dyn StateStore>` / `Arc<dyn PubSub>`, and backends outside this crate (e.g. Redis) plug in
//! through the [`Registry`] without touching the API layer. Key prefixing, scopes, CloudEvent
//! wrapping and resiliency live above the components, as in daprd.

mod pubsub_memory;
mod registry;
mod secret_env;
mod secret_file;
mod state_memory;

pub use pubsub_memory::InMemoryPubSub;
pub use registry::{
    PubSubDecorator, PubSubFactory, Registry, SecretStoreFactory, StateStoreDecorator,
    StateStoreFactory,
};
pub use secret_env::EnvSecretStore;
pub use secret_file::FileSecretStore;
pub use state_memory::InMemoryStateStore;

use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A stored state value.
#[derive(Debug, Clone, PartialEq)]
pub struct StateItem {
    pub data: Bytes,
    pub etag: Option<String>,
    /// Response metadata, returned as `metadata.<k>` headers.
    pub metadata: BTreeMap<String, String>,
}

/// `options.concurrency` of a state request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concurrency {
    #[default]
    Unspecified,
    FirstWrite,
    LastWrite,
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub struct SetRequest {
    /// Already prefixed key.
    pub key: String,
    /// JSON encoding of the value.
    pub value: Bytes,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    /// `metadata.ttlInSeconds`: `Some(n > 0)` expires, `Some(n <= 0)` persists, `None` leaves any
    /// earlier expiry in force (Redis behaviour).
    pub ttl_seconds: Option<i64>,
}

/// One delete.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteRequest {
    pub key: String,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactionOp {
    Set(SetRequest),
    Delete(DeleteRequest),
}

/// State store failures, classified the way daprd maps them to HTTP statuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    /// ETag did not match (409 on save/delete).
    #[error("possible etag mismatch. error from state store: {0}")]
    EtagMismatch(String),
    /// ETag could not be parsed (400 on save).
    #[error("invalid etag value: {0}")]
    EtagInvalid(String),
    /// Any other failure (500).
    #[error("{0}")]
    Store(String),
}

/// A state store component.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Capabilities reported by `GET /v1.0/metadata` (`ETAG`, `TRANSACTIONAL`, `TTL`, ...).
    fn features(&self) -> Vec<String>;
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<StateItem>, StateError>>;
    fn set(&self, req: SetRequest) -> BoxFuture<'_, Result<(), StateError>>;
    fn delete(&self, req: DeleteRequest) -> BoxFuture<'_, Result<(), StateError>>;
    /// Runs the operations in order. Like Redis `MULTI`/`EXEC`, a failing operation does not
    /// roll back the others; the first error is returned.
    fn transact(&self, ops: Vec<TransactionOp>) -> BoxFuture<'_, Result<(), StateError>>;
    /// Every live (prefixed) key; used by the test harness.
    fn keys(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>>;
    /// What the store holds in this process under `prefix` (the keys `prefix||...`, or every key
    /// for `None`), by key family: `None` for a store whose data lives elsewhere (Redis), which
    /// has its own tools for that.
    fn usage(&self, prefix: Option<&str>) -> Option<Vec<KeyFamily>> {
        let _ = prefix;
        None
    }
    /// Bytes of memory the whole store (every app's keys) holds its keys and values in, free
    /// space not yet compacted away included: `None` for a store whose data lives elsewhere.
    fn reserved_bytes(&self) -> Option<u64> {
        None
    }
}

/// The live keys of one key family and the bytes they hold: the key and the value as held
/// (the key encoded short, the value compressed or not); the store's own bookkeeping per key
/// comes on top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFamily {
    /// The key without its app prefix, every id-like segment replaced by `*`
    /// (`trail:task:*:head`).
    pub family: String,
    pub keys: u64,
    pub bytes: u64,
}

/// A message as the broker stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    /// CloudEvent JSON, or the raw payload.
    pub data: Bytes,
    /// Publish metadata; delivered to the app as headers.
    pub metadata: BTreeMap<String, String>,
}

/// Failure of a pub/sub component.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PubSubError(pub String);

/// What the subscriber side tells the component about one message: `Err` means "not processed",
/// and the component applies its own redelivery.
pub type HandlerResult = Result<(), String>;

/// Called by the component for each message of a subscription.
pub type MessageHandler = Arc<dyn Fn(Message) -> BoxFuture<'static, HandlerResult> + Send + Sync>;

/// A subscription request from one sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    pub topic: String,
    /// Consumer group: members of one group compete, different groups each get every message.
    pub consumer_group: String,
    /// Messages handled at once by this subscriber.
    pub concurrency: usize,
    /// For a bulk subscription, the most entries of one batch (`maxMessagesCount`). A component
    /// that otherwise hands over one message at a time per ordered stream (a Kafka partition)
    /// hands over up to this many at once, so that they can form one batch.
    pub bulk_max_messages: Option<usize>,
}

/// A live subscription; cancelling it stops its workers (in-flight messages go back to the group).
#[derive(Debug)]
pub struct Subscription {
    cancel: CancellationToken,
    tracker: tokio_util::task::TaskTracker,
}

impl Subscription {
    /// A subscription whose workers run on `tracker` and stop when `cancel` fires.
    pub fn new(cancel: CancellationToken, tracker: tokio_util::task::TaskTracker) -> Self {
        Self { cancel, tracker }
    }

    /// Stops the subscription and waits for its workers to finish.
    pub async fn close(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// A pub/sub component.
pub trait PubSub: Send + Sync + std::fmt::Debug {
    /// Feature list (the in-memory broker, like Redis Streams, has no native TTL).
    fn features(&self) -> Vec<String>;
    /// The consumer group of `app_id`'s subscriptions when the component's own metadata names
    /// one that wins over `consumerID` and the app id (Kafka's `consumerGroup`); `None` leaves
    /// the choice to the runtime.
    fn consumer_group(&self, _app_id: &str) -> Option<String> {
        None
    }
    fn publish(&self, msg: Message) -> BoxFuture<'_, Result<(), PubSubError>>;
    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: MessageHandler,
    ) -> BoxFuture<'_, Result<Subscription, PubSubError>>;
    /// Stops every subscription and background task of the component (end of a run).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// One secret: entry name to value.
pub type Secret = BTreeMap<String, String>;

/// A secret store failure (500 `ERR_SECRET_GET` on the API).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

/// A secret store component.
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    /// The secret `name`.
    fn get(&self, name: &str) -> Result<Secret, SecretError>;
    /// Every secret of the store.
    fn bulk(&self) -> Result<BTreeMap<String, Secret>, SecretError>;
}
