//! The AsyncAPI document says what the code does: every topic and dead-letter topic has a
//! channel, every producer a `send` and every consumer a `receive`, and every reference resolves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use events::asyncapi::{self, message_name};
use events::{Topic, apps, dead_letter_topic, dead_letter_topics};
use serde_json::Value;

/// `(app, action, channel)` of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String, String)> {
    doc["operations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, op)| {
            let channel = op["channel"]["$ref"]
                .as_str()
                .unwrap()
                .trim_start_matches("#/channels/")
                .to_owned();
            let app = id.split('.').next().unwrap().to_owned();
            (app, op["action"].as_str().unwrap().to_owned(), channel)
        })
        .collect()
}

fn collect_refs<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get("$ref") {
                refs.push(target);
            }
            object.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

#[test]
fn header_and_version() {
    let doc = asyncapi::document();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["defaultContentType"], "application/json");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
}

#[test]
fn every_topic_has_a_channel_addressed_by_its_name() {
    let doc = asyncapi::document();
    for topic in Topic::ALL {
        let channel = &doc["channels"][topic.as_str()];
        assert_eq!(channel["address"], topic.as_str());
        let messages: Vec<&String> = channel["messages"].as_object().unwrap().keys().collect();
        assert_eq!(messages, [&message_name(topic)], "{topic}");
    }
}

#[test]
fn operations_follow_producers_and_consumers() {
    let doc = asyncapi::document();
    let mut expected = BTreeSet::new();
    for topic in Topic::ALL {
        let channel = topic.as_str().to_owned();
        expected.insert((topic.producer().into(), "send".into(), channel.clone()));
        for consumer in topic.consumers() {
            expected.insert(((*consumer).into(), "receive".into(), channel.clone()));
        }
    }
    for app in apps::SUBSCRIBERS {
        let channel = dead_letter_topic(app);
        expected.insert((app.into(), "send".into(), channel.clone()));
        expected.insert((apps::AUDIT_LOGGER.into(), "receive".into(), channel.clone()));
        // Each subscriber's second chance on its own dead letters.
        expected.insert((app.into(), "receive".into(), channel));
    }
    assert_eq!(operations(&doc), expected);
}

#[test]
fn receive_operations_carry_the_dapr_subscription() {
    let doc = asyncapi::document();
    let op = &doc["operations"]["email-worker.receive.task-created"];
    let subscription = &op["x-dapr-subscription"];
    assert_eq!(subscription["pubsubname"], "todo-pubsub");
    assert_eq!(subscription["route"], "/events/task-created");
    assert_eq!(subscription["deadLetterTopic"], "email-worker-dead-letters");
    assert_eq!(subscription["consumerGroup"], "email-worker");
}

#[test]
fn dead_letter_channels_carry_what_their_app_consumes() {
    let doc = asyncapi::document();
    for channel in dead_letter_topics() {
        assert_eq!(doc["channels"][&channel]["address"], channel.as_str());
    }
    let email: BTreeSet<&String> = doc["channels"]["email-worker-dead-letters"]["messages"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        email,
        BTreeSet::from([&"TaskCreated".to_owned(), &"TaskDueSoon".to_owned()])
    );
}

#[test]
fn every_reference_resolves() {
    let doc = asyncapi::document();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "only {} references", refs.len());
    for target in refs {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external reference {target}"));
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }
}

#[test]
fn operation_messages_belong_to_their_channel() {
    let doc = asyncapi::document();
    for (id, op) in doc["operations"].as_object().unwrap() {
        let channel = op["channel"]["$ref"].as_str().unwrap();
        for message in op["messages"].as_array().unwrap() {
            let target = message["$ref"].as_str().unwrap();
            assert!(
                target.starts_with(&format!("{channel}/messages/")),
                "{id}: {target} is not a message of {channel}"
            );
        }
    }
}

#[test]
fn message_payloads_pin_their_event_type() {
    let doc = asyncapi::document();
    for topic in Topic::ALL {
        let message = &doc["components"]["messages"][message_name(topic)];
        let payload = message["payload"]["$ref"].as_str().unwrap();
        let schema = doc.pointer(payload.trim_start_matches('#')).unwrap();
        assert_eq!(schema["properties"]["event_type"]["const"], topic.as_str());
        assert_eq!(
            message["correlationId"]["location"],
            "$message.payload#/correlation_id"
        );
    }
}
