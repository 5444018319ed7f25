//! Decoding what a Dapr sidecar delivers to a subscriber into a typed envelope.
//!
//! A delivery is either a structured CloudEvent (the envelope under `data`, or base64 under
//! `data_base64` when the publisher used a binary content type or the subscription is raw), or,
//! when a publisher sent `rawPayload=true` to a non-raw subscriber, the envelope itself. Readers
//! are tolerant: unknown fields anywhere are ignored.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{Envelope, EventPayload};

/// The CloudEvent attributes of a delivery that a handler may want (ids, tracing, routing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CloudEventAttributes {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub source: String,
    #[serde(default, rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub specversion: String,
    #[serde(default)]
    pub datacontenttype: String,
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub pubsubname: String,
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub traceparent: String,
    #[serde(default)]
    pub tracestate: String,
}

/// A decoded delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery<T> {
    /// The CloudEvent attributes; all empty when the body was not a CloudEvent.
    pub cloud_event: CloudEventAttributes,
    pub envelope: Envelope<T>,
}

/// Why a delivery could not be decoded. Every variant is permanent: redelivering the same bytes
/// cannot succeed, so subscribers drop (dead-letter) such events.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the delivery body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the delivery body is JSON but not an object")]
    NotAnObject,
    #[error("the CloudEvent has neither `data` nor `data_base64`")]
    MissingData,
    #[error("the CloudEvent's `data_base64` is not valid base64: {0}")]
    Base64(base64::DecodeError),
    #[error("the CloudEvent's `data_base64` is not a string")]
    Base64NotAString,
    #[error("the CloudEvent's data is a string that is not a JSON envelope: {0}")]
    DataNotJson(serde_json::Error),
    #[error("the envelope does not match `{expected}`: {source}")]
    Envelope {
        expected: &'static str,
        source: serde_path_to_error::Error<serde_json::Error>,
    },
    #[error("expected an event of type `{expected}`, got `{found}`")]
    WrongEventType {
        expected: &'static str,
        found: String,
    },
    #[error(
        "`{event_type}` schema version {found} is newer than this reader understands ({supported})"
    )]
    UnsupportedSchemaVersion {
        event_type: &'static str,
        found: u32,
        supported: u32,
    },
}

/// Decodes a delivery body into a typed envelope, checking its `event_type` and schema version.
pub fn decode<T: EventPayload>(body: &[u8]) -> Result<Delivery<T>, DecodeError> {
    let value: Value = serde_json::from_slice(body).map_err(DecodeError::NotJson)?;
    let Value::Object(object) = value else {
        return Err(DecodeError::NotAnObject);
    };
    let (cloud_event, envelope) = if object.contains_key("specversion") {
        let attributes = attributes_of(&object);
        (attributes, cloud_event_data(object)?)
    } else {
        (CloudEventAttributes::default(), Value::Object(object))
    };
    let envelope = envelope_from::<T>(envelope)?;
    Ok(Delivery {
        cloud_event,
        envelope,
    })
}

fn attributes_of(object: &Map<String, Value>) -> CloudEventAttributes {
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    CloudEventAttributes {
        id: text("id"),
        source: text("source"),
        event_type: text("type"),
        specversion: text("specversion"),
        datacontenttype: text("datacontenttype"),
        topic: text("topic"),
        pubsubname: text("pubsubname"),
        time: text("time"),
        traceparent: text("traceparent"),
        tracestate: text("tracestate"),
    }
}

fn cloud_event_data(mut object: Map<String, Value>) -> Result<Value, DecodeError> {
    // A null `data_base64` counts as absent, so `data` beside it still decodes.
    match object.remove("data_base64") {
        None | Some(Value::Null) => {}
        Some(Value::String(encoded)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(DecodeError::Base64)?;
            return serde_json::from_slice(&bytes).map_err(DecodeError::DataNotJson);
        }
        Some(_) => return Err(DecodeError::Base64NotAString),
    }
    match object.remove("data") {
        // A JSON body published with a non-JSON content type arrives as a string.
        Some(Value::String(text)) => serde_json::from_str(&text).map_err(DecodeError::DataNotJson),
        Some(Value::Null) | None => Err(DecodeError::MissingData),
        Some(data) => Ok(data),
    }
}

fn envelope_from<T: EventPayload>(value: Value) -> Result<Envelope<T>, DecodeError> {
    let expected = T::TOPIC.as_str();
    // Check the type first: a mismatched type gives a clearer error than a field error.
    if let Some(found) = value.get("event_type").and_then(Value::as_str)
        && found != expected
    {
        return Err(DecodeError::WrongEventType {
            expected,
            found: found.to_owned(),
        });
    }
    let envelope: Envelope<T> = serde_path_to_error::deserialize(value)
        .map_err(|source| DecodeError::Envelope { expected, source })?;
    if envelope.schema_version > T::SCHEMA_VERSION {
        return Err(DecodeError::UnsupportedSchemaVersion {
            event_type: expected,
            found: envelope.schema_version,
            supported: T::SCHEMA_VERSION,
        });
    }
    Ok(envelope)
}

/// Decodes only the CloudEvent attributes and the untyped envelope: for consumers that record
/// every event whatever its type (the audit trail).
pub fn decode_any(body: &[u8]) -> Result<(CloudEventAttributes, Value), DecodeError> {
    let value: Value = serde_json::from_slice(body).map_err(DecodeError::NotJson)?;
    let Value::Object(object) = value else {
        return Err(DecodeError::NotAnObject);
    };
    if object.contains_key("specversion") {
        let attributes = attributes_of(&object);
        Ok((attributes, cloud_event_data(object)?))
    } else {
        Ok((CloudEventAttributes::default(), Value::Object(object)))
    }
}
