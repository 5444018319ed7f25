//! The envelope every service publishes. Dapr wraps it in a CloudEvent; the envelope travels as the
//! CloudEvent's `data`, so it survives any broker and any raw-payload subscription unchanged.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Topic;

/// A payload type that travels on exactly one topic.
pub trait EventPayload: Serialize + DeserializeOwned + JsonSchema {
    /// The topic this payload is published on; its name is also the envelope's `event_type`.
    const TOPIC: Topic;
    /// Bumped on a breaking change of the payload's shape; readers check it.
    const SCHEMA_VERSION: u32;

    /// The broker partition key: the task id for task events, so one task's events keep their
    /// order on Kafka.
    fn partition_key(&self) -> Option<String>;
}

/// The event envelope: identity, tracing and the typed payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "{T}Envelope")]
pub struct Envelope<T> {
    /// Unique per event; UUID v7 (time ordered) unless a producer needs a deterministic id. Every
    /// consumer deduplicates on it, and it is published as the CloudEvent `id`.
    pub event_id: Uuid,
    /// The topic name, e.g. `task-created`; published as the CloudEvent `type`.
    pub event_type: String,
    /// The payload's schema version (see [`EventPayload::SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// When the producer created the event, RFC 3339 in UTC with microseconds (the CloudEvent
    /// `time` that Dapr sets has whole seconds only).
    #[serde(with = "rfc3339_micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub timestamp: DateTime<Utc>,
    /// Carried unchanged from the request (or event) that caused this one.
    pub correlation_id: String,
    /// The `event_id` of the event that caused this one, if any.
    #[serde(default)]
    pub causation_id: Option<Uuid>,
    /// The app id of the producer.
    pub source: String,
    /// The payload.
    pub data: T,
}

impl<T: EventPayload> Envelope<T> {
    /// A new envelope with a fresh UUID v7 and the current time.
    pub fn new(source: impl Into<String>, correlation_id: impl Into<String>, data: T) -> Self {
        Self::with_id(Uuid::now_v7(), Utc::now(), source, correlation_id, data)
    }

    /// An envelope with a chosen id and time: for deterministic ids (e.g. one reminder per task
    /// and due date) and for tests.
    pub fn with_id(
        event_id: Uuid,
        timestamp: DateTime<Utc>,
        source: impl Into<String>,
        correlation_id: impl Into<String>,
        data: T,
    ) -> Self {
        Self {
            event_id,
            event_type: T::TOPIC.as_str().to_owned(),
            schema_version: T::SCHEMA_VERSION,
            timestamp,
            correlation_id: correlation_id.into(),
            causation_id: None,
            source: source.into(),
            data,
        }
    }

    /// Marks this event as caused by `cause` (sets `causation_id`).
    pub fn caused_by(mut self, cause: Uuid) -> Self {
        self.causation_id = Some(cause);
        self
    }

    /// The topic this envelope is published on.
    pub fn topic(&self) -> Topic {
        T::TOPIC
    }

    /// The partition key of the payload (see [`EventPayload::partition_key`]).
    pub fn partition_key(&self) -> Option<String> {
        self.data.partition_key()
    }
}

/// Timestamps are written with exactly six fractional digits so the wire format is stable; any
/// RFC 3339 form with an offset is accepted on read and normalised to UTC.
pub mod rfc3339_micros {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes `t` as RFC 3339 UTC with six fractional digits (sub-microsecond digits are cut).
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    /// Reads any RFC 3339 timestamp with an offset and converts it to UTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| D::Error::custom(format!("`{raw}` is not an RFC 3339 timestamp: {e}")))
    }

    /// The same rules for an optional timestamp.
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes `null` or the timestamp.
        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        /// Reads `null` or a timestamp.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] DateTime<Utc>);
            Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(t)| t))
        }
    }
}
