//! Typed event envelopes, topic names and payloads shared by the task services.
//!
//! This crate is the wire contract between independently deployed services: it does no I/O, and
//! its golden fixtures (`tests/fixtures`) pin the JSON of every event, so renaming or retyping a
//! field breaks a test before it breaks a consumer. Writers are strict (every field typed);
//! readers are tolerant (unknown fields are ignored) so producers can add fields first.
//!
//! - [`topics`]: topic names, app ids, who produces and who consumes what, dead-letter topics.
//! - [`access`]: who may publish and subscribe to each topic (the pub/sub scopes).
//! - [`envelope`] and [`payloads`]: the typed events.
//! - [`delivery`]: decoding what a Dapr sidecar delivers (CloudEvent or raw) into an envelope.
//! - [`schema`] and [`asyncapi`]: a JSON Schema per topic and the AsyncAPI 3.0 document, both
//!   generated from the types. The copies in `docs/` are checked by a test; regenerate them with
//!   `UPDATE_SCHEMAS=1 cargo test -p events --test it generated_docs`.

pub mod access;
pub mod asyncapi;
pub mod delivery;
pub mod envelope;
pub mod payloads;
pub mod schema;
pub mod topics;

pub use access::{REPLAYER, publishing_scopes, subscription_scopes};
pub use delivery::{CloudEventAttributes, DecodeError, Delivery, decode, decode_any};
pub use envelope::{Envelope, EventPayload};
pub use payloads::{
    Channel, NotificationFailed, NotificationSent, Priority, TaskCompleted, TaskCreated,
    TaskDeleted, TaskDueSoon, TaskSnapshot, TaskStatus, TaskUpdated,
};
pub use topics::{
    PUBSUB_NAME, STATE_STORE_NAME, Topic, apps, dead_letter_consumers, dead_letter_topic,
    dead_letter_topics,
};
