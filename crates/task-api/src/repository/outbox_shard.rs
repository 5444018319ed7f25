//! The stored form of the outbox: an `outbox:{instance}:e{seq}` key holds one event recorded by
//! writer `instance` and not yet known to be published; the keys of the earlier layouts
//! (`outbox:{instance}:{n}`, `outbox:{n}`) hold several, and are only drained. All share one
//! value shape, a list of entries. What the entries are for, and in which order they are
//! written, published and removed, is [`crate::outbox`]'s business.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::model::EventRef;

/// One recorded event waiting to be published.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub event_id: Uuid,
    pub task_id: Uuid,
    pub version: u64,
    pub topic: String,
    /// The `events::Envelope` exactly as it will be published: its JSON text, encoded once
    /// when the change is planned and sent as is.
    pub envelope: Box<RawValue>,
    #[serde(default)]
    pub traceparent: Option<String>,
    pub recorded_at: DateTime<Utc>,
    /// Set by the writer once it knows the change committed (its transaction succeeded, or a
    /// read after a failed one found the event in the record), so the relay publishes the entry
    /// without having to prove it from the task record's bounded history.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub committed: bool,
    /// The task's owner, so the index projection finds the bucket even once the task record is
    /// gone (entries of earlier releases lack it; their record names the owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// The open-task slot this change took (a create, a reopen) or gave up (a completion, a
    /// deletion): once the entry is settled, the slot is released unless the task holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
}

impl OutboxEntry {
    /// The `(version, event id)` the task record lists once the change committed.
    pub fn event_ref(&self) -> EventRef {
        EventRef {
            version: self.version,
            event_id: self.event_id,
        }
    }
}

/// The value of an outbox key: one entry for a per-event key, several in a shard of an earlier
/// layout.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutboxShard {
    #[serde(default)]
    pub entries: Vec<OutboxEntry>,
}

impl OutboxShard {
    /// The value of the per-event key of `entry`.
    pub fn one(entry: &OutboxEntry) -> Self {
        Self {
            entries: vec![entry.clone()],
        }
    }
}
