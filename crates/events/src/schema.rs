//! JSON Schemas of the events, generated from the Rust types so they cannot drift from the code.
//!
//! Each topic gets one schema describing the whole envelope with its payload, with `event_type`
//! pinned to the topic name and `schema_version` capped at what this crate reads. Fields a reader
//! can default are optional, and unknown fields are never forbidden, matching the tolerant-reader
//! rule. `docs/schemas/<topic>.json` holds the rendered
//! copies; a test fails when they are stale.

use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::{
    Envelope, EventPayload, NotificationFailed, NotificationSent, TaskCompleted, TaskCreated,
    TaskDeleted, TaskDueSoon, TaskUpdated, Topic,
};

/// Calls a generic function with the payload type of a topic: the one place that maps a runtime
/// [`Topic`] to its compile-time payload.
pub(crate) trait PayloadVisitor {
    type Output;
    fn visit<T: EventPayload>(&mut self) -> Self::Output;
}

pub(crate) fn visit_payload<V: PayloadVisitor>(topic: Topic, visitor: &mut V) -> V::Output {
    match topic {
        Topic::TaskCreated => visitor.visit::<TaskCreated>(),
        Topic::TaskUpdated => visitor.visit::<TaskUpdated>(),
        Topic::TaskCompleted => visitor.visit::<TaskCompleted>(),
        Topic::TaskDeleted => visitor.visit::<TaskDeleted>(),
        Topic::TaskDueSoon => visitor.visit::<TaskDueSoon>(),
        Topic::NotificationSent => visitor.visit::<NotificationSent>(),
        Topic::NotificationFailed => visitor.visit::<NotificationFailed>(),
    }
}

/// The schema version of the payload published on `topic`.
pub fn schema_version(topic: Topic) -> u32 {
    struct Version;
    impl PayloadVisitor for Version {
        type Output = u32;
        fn visit<T: EventPayload>(&mut self) -> u32 {
            T::SCHEMA_VERSION
        }
    }
    visit_payload(topic, &mut Version)
}

/// The name of the envelope schema of `topic` (e.g. `TaskCreatedEnvelope`), as used in
/// `$defs` and in the AsyncAPI document's `components/schemas`.
pub fn envelope_schema_name(topic: Topic) -> String {
    struct Name;
    impl PayloadVisitor for Name {
        type Output = String;
        fn visit<T: EventPayload>(&mut self) -> String {
            <Envelope<T> as schemars::JsonSchema>::schema_name().into_owned()
        }
    }
    visit_payload(topic, &mut Name)
}

/// A human-readable sentence on who publishes and who consumes `topic`.
pub(crate) fn routing_sentence(topic: Topic) -> String {
    format!(
        "Published by {} on `{}`; consumed by {}.",
        topic.producer(),
        topic.as_str(),
        topic.consumers().join(", ")
    )
}

/// The standalone JSON Schema (draft 2020-12) of the envelope published on `topic`.
pub fn envelope_schema(topic: Topic) -> Value {
    struct Root;
    impl PayloadVisitor for Root {
        type Output = Value;
        fn visit<T: EventPayload>(&mut self) -> Value {
            let mut generator = SchemaSettings::draft2020_12().into_generator();
            generator.root_schema_for::<Envelope<T>>().to_value()
        }
    }
    let mut schema = visit_payload(topic, &mut Root);
    pin_envelope(&mut schema, topic);
    schema
}

/// Every topic's envelope schema, in [`Topic::ALL`] order.
pub fn envelope_schemas() -> Vec<(Topic, Value)> {
    Topic::ALL
        .into_iter()
        .map(|topic| (topic, envelope_schema(topic)))
        .collect()
}

/// Adds the envelope schemas of every topic (and everything they reference) to `generator`'s
/// definitions, returning the definitions with each envelope pinned to its topic.
pub(crate) fn all_definitions(generator: &mut SchemaGenerator) -> serde_json::Map<String, Value> {
    struct Sub<'a>(&'a mut SchemaGenerator);
    impl PayloadVisitor for Sub<'_> {
        type Output = ();
        fn visit<T: EventPayload>(&mut self) {
            self.0.subschema_for::<Envelope<T>>();
        }
    }
    for topic in Topic::ALL {
        visit_payload(topic, &mut Sub(generator));
    }
    let mut definitions = generator.take_definitions(true);
    for topic in Topic::ALL {
        if let Some(schema) = definitions.get_mut(&envelope_schema_name(topic)) {
            pin_envelope(schema, topic);
        }
    }
    definitions
}

/// The generic envelope says `event_type` is any string; each topic's schema says which one,
/// that versions newer than this crate's are not understood, and who publishes and consumes it.
fn pin_envelope(schema: &mut Value, topic: Topic) {
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "description".into(),
            json!(format!(
                "Envelope of a `{}` event. {}",
                topic.as_str(),
                routing_sentence(topic)
            )),
        );
    }
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    properties.insert(
        "event_type".into(),
        json!({
            "description": "The topic name; published as the CloudEvent `type`.",
            "type": "string",
            "const": topic.as_str(),
        }),
    );
    properties.insert(
        "schema_version".into(),
        json!({
            "description": "The payload's schema version; readers reject versions newer than they know.",
            "type": "integer",
            "format": "uint32",
            "minimum": 1,
            "maximum": schema_version(topic),
        }),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn envelope_schema_pins_type_and_names_required_fields() {
        let schema = envelope_schema(Topic::TaskDueSoon);
        assert_eq!(schema["title"], "TaskDueSoonEnvelope");
        assert_eq!(schema["properties"]["event_type"]["const"], "task-due-soon");
        let required = schema["required"].as_array().unwrap();
        for field in ["event_id", "event_type", "timestamp", "data"] {
            assert!(required.contains(&json!(field)), "{field} not required");
        }
        // Optional on read: the tolerant reader accepts a missing causation id.
        assert!(!required.contains(&json!("causation_id")));
        assert_eq!(schema["properties"]["timestamp"]["format"], "date-time");
    }
}
