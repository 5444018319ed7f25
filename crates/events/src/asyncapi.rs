//! The AsyncAPI 3.0 description of every topic, generated from this crate.
//!
//! One channel per topic (address = topic name) and one per dead-letter topic; one `send`
//! operation for each topic's producer and one `receive` operation per consumer, both taken from
//! [`Topic::producer`] and [`Topic::consumers`], so the document always says what the code does.
//! Message payloads are the envelope schemas of [`crate::schema`], embedded under
//! `components/schemas` as AsyncAPI (draft-07) schemas.
//!
//! On the broker Dapr wraps each envelope in a structured CloudEvent (the envelope is its
//! `data`); the document describes the envelope because that is the contract between services,
//! and says so in each message. `docs/asyncapi.yaml` is the rendered copy; a test fails when it is
//! stale (`UPDATE_SCHEMAS=1 cargo test -p events` rewrites it).

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::schema::{all_definitions, envelope_schema_name, routing_sentence};
use crate::{PUBSUB_NAME, Topic, apps, dead_letter_consumers, dead_letter_topic};

/// The AsyncAPI version the document follows.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// The message name of a topic in `components/messages` and in channels, e.g. `TaskCreated`.
pub fn message_name(topic: Topic) -> String {
    topic
        .as_str()
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The operation id of `app` performing `action` (`send` or `receive`) on `channel`.
fn operation_id(app: &str, action: &str, channel: &str) -> String {
    format!("{app}.{action}.{channel}")
}

fn channel_ref(channel: &str) -> Value {
    json!({ "$ref": format!("#/channels/{channel}") })
}

fn channel_message_ref(channel: &str, message: &str) -> Value {
    json!({ "$ref": format!("#/channels/{channel}/messages/{message}") })
}

/// The topics whose events `app` consumes, i.e. what can end up in its dead-letter topic.
fn consumed_by(app: &str) -> Vec<Topic> {
    Topic::ALL
        .into_iter()
        .filter(|topic| topic.consumers().contains(&app))
        .collect()
}

fn message(topic: Topic) -> Value {
    json!({
        "name": topic.as_str(),
        "title": topic.as_str(),
        "summary": routing_sentence(topic),
        "description": format!(
            "The envelope of a `{}` event. Dapr delivers it as the `data` of a structured \
             CloudEvent whose `id` and `type` are the envelope's `event_id` and `event_type`; \
             the broker partition key is the task id.",
            topic.as_str()
        ),
        "contentType": "application/json",
        "correlationId": {
            "description": "Carried unchanged from the request or event that caused this one.",
            "location": "$message.payload#/correlation_id",
        },
        "payload": { "$ref": format!("#/components/schemas/{}", envelope_schema_name(topic)) },
    })
}

fn topic_channel(topic: Topic) -> Value {
    let name = message_name(topic);
    json!({
        "address": topic.as_str(),
        "title": topic.as_str(),
        "description": routing_sentence(topic),
        "messages": { name.clone(): { "$ref": format!("#/components/messages/{name}") } },
    })
}

fn dead_letter_channel(app: &str) -> Value {
    let topic = dead_letter_topic(app);
    let messages: Map<String, Value> = consumed_by(app)
        .into_iter()
        .map(|consumed| {
            let name = message_name(consumed);
            let reference = json!({ "$ref": format!("#/components/messages/{name}") });
            (name, reference)
        })
        .collect();
    json!({
        "address": topic,
        "title": topic,
        "description": format!(
            "Events {app} answered `DROP` to (or that failed all retries), republished by its \
             sidecar with the original CloudEvent, whose `topic` names where it came from. \
             Recorded by {}; {app} consumes it too, a second chance for events that failed \
             only because it was down or slow.",
            apps::AUDIT_LOGGER
        ),
        "messages": messages,
    })
}

/// One operation; `extra` holds specification extensions (`x-...`) merged into it.
fn operation(
    action: &str,
    channel: &str,
    messages: &[String],
    summary: String,
    extra: Value,
) -> Value {
    let mut operation = json!({
        "action": action,
        "channel": channel_ref(channel),
        "summary": summary,
        "messages": messages
            .iter()
            .map(|message| channel_message_ref(channel, message))
            .collect::<Vec<_>>(),
    });
    if let (Some(object), Value::Object(extra)) = (operation.as_object_mut(), extra) {
        object.extend(extra);
    }
    operation
}

/// How the consuming app's subscription is declared to Dapr (see `GET /dapr/subscribe`).
fn subscription(app: &str, channel: &str, dead_letter: Option<String>) -> Value {
    let mut subscription = json!({
        "pubsubname": PUBSUB_NAME,
        "route": format!("/events/{channel}"),
        "consumerGroup": app,
    });
    if let (Some(object), Some(topic)) = (subscription.as_object_mut(), dead_letter) {
        object.insert("deadLetterTopic".into(), Value::String(topic));
    }
    json!({ "x-dapr-subscription": subscription })
}

/// The AsyncAPI 3.0 document for every topic and dead-letter topic, as JSON.
pub fn document() -> Value {
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();

    for topic in Topic::ALL {
        let channel = topic.as_str();
        let name = message_name(topic);
        channels.insert(channel.to_owned(), topic_channel(topic));
        messages.insert(name.clone(), message(topic));
        let names = [name];
        let producer = topic.producer();
        operations.insert(
            operation_id(producer, "send", channel),
            operation(
                "send",
                channel,
                &names,
                format!("{producer} publishes `{channel}`."),
                json!({}),
            ),
        );
        for consumer in topic.consumers() {
            operations.insert(
                operation_id(consumer, "receive", channel),
                operation(
                    "receive",
                    channel,
                    &names,
                    format!("{consumer} consumes `{channel}` in its own consumer group."),
                    subscription(consumer, channel, Some(dead_letter_topic(consumer))),
                ),
            );
        }
    }

    for app in apps::SUBSCRIBERS {
        let channel = dead_letter_topic(app);
        let names: Vec<String> = consumed_by(app).into_iter().map(message_name).collect();
        channels.insert(channel.clone(), dead_letter_channel(app));
        operations.insert(
            operation_id(app, "send", &channel),
            operation(
                "send",
                &channel,
                &names,
                format!("{app}'s sidecar republishes the events {app} dropped."),
                json!({}),
            ),
        );
        for consumer in dead_letter_consumers(app) {
            let summary = match (consumer == apps::AUDIT_LOGGER, consumer == app) {
                (true, true) => format!(
                    "{consumer} records its own dead letters, and records the events in their \
                     trails (its second chance)."
                ),
                (true, false) => format!("{consumer} records the dead letters of {app}."),
                _ => format!(
                    "{consumer} processes its own dead letters again (a second chance); a \
                     failure there returns the message to the broker, a DROP ends it."
                ),
            };
            operations.insert(
                operation_id(consumer, "receive", &channel),
                operation(
                    "receive",
                    &channel,
                    &names,
                    summary,
                    subscription(consumer, &channel, None),
                ),
            );
        }
    }

    // AsyncAPI's default schema format is a draft-07 superset; references must point into the
    // document itself, so definitions live under `components/schemas`.
    let mut generator = SchemaSettings::draft07()
        .with(|settings| settings.definitions_path = "/components/schemas".into())
        .into_generator();
    let schemas = all_definitions(&mut generator);

    json!({
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Task events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Events exchanged by the task services through the Dapr pub/sub component \
                 `{PUBSUB_NAME}`. Each service subscribes in its own consumer group (its app id), \
                 so every service sees every event of a topic while replicas of one service share \
                 them. Delivery is at least once: consumers deduplicate on `event_id` and drop \
                 stale events by the task `version`."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
        },
    })
}

/// [`document`] rendered as YAML, as checked in at `docs/asyncapi.yaml`.
pub fn document_yaml() -> Result<String, yaml_serde::Error> {
    yaml_serde::to_string(&document())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn message_names_are_pascal_case() {
        assert_eq!(message_name(Topic::TaskDueSoon), "TaskDueSoon");
        assert_eq!(
            message_name(Topic::NotificationFailed),
            "NotificationFailed"
        );
    }
}
