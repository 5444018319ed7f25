//! Decoding what a Dapr sidecar delivers: every shape a delivery can take, every error, and the
//! tolerant-reader rule (unknown fields are ignored at every level).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use base64::Engine as _;
use events::{DecodeError, TaskCreated, TaskDueSoon, TaskUpdated, Topic, decode, decode_any};
use serde_json::{Value, json};
use support::*;

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

fn created_cloud_event() -> Value {
    dapr_cloud_event(Topic::TaskCreated, &fixture_value(Topic::TaskCreated))
}

fn decode_err<T: events::EventPayload + std::fmt::Debug>(body: &[u8]) -> DecodeError {
    match decode::<T>(body) {
        Ok(delivery) => panic!("decoded unexpectedly: {:?}", delivery.envelope),
        Err(e) => e,
    }
}

#[test]
fn structured_cloud_event_exactly_as_daprd_writes_it() {
    // Byte for byte the shape daprd produces: Go's encoder sorts keys and escapes <, > and &.
    let body = r#"{"data":{"causation_id":null,"correlation_id":"req-7f3a9c","data":{"task":{"created_at":"2026-03-14T09:26:53.589793Z","description":"Numbers \u0026 charts \u003cfirst\u003e","due_date":"2026-03-20T17:00:00.000000Z","priority":"high","status":"open","task_id":"0190f5b2-7c1e-7a3d-9f4e-2b6c8d0e1f23","title":"Write the quarterly report","updated_at":"2026-03-14T09:26:53.589793Z","user_email":"ada@example.com","user_id":"5f3c1d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f","version":1}},"event_id":"0190f5b2-8000-7000-8000-000000000001","event_type":"task-created","schema_version":1,"source":"task-api","timestamp":"2026-03-14T09:26:53.589793Z"},"datacontenttype":"application/json","id":"0190f5b2-8000-7000-8000-000000000001","pubsubname":"todo-pubsub","source":"task-api","specversion":"1.0","time":"2026-03-14T09:26:54Z","topic":"task-created","traceid":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00","tracestate":"","type":"task-created"}"#;

    let delivery = decode::<TaskCreated>(body.as_bytes()).unwrap();

    let mut expected = task_created();
    expected.data.task.description = "Numbers & charts <first>".into();
    assert_eq!(delivery.envelope, expected);
    let ce = &delivery.cloud_event;
    assert_eq!(ce.id, "0190f5b2-8000-7000-8000-000000000001");
    assert_eq!(ce.event_type, "task-created");
    assert_eq!(ce.source, "task-api");
    assert_eq!(ce.specversion, "1.0");
    assert_eq!(ce.datacontenttype, "application/json");
    assert_eq!(ce.topic, "task-created");
    assert_eq!(ce.pubsubname, "todo-pubsub");
    assert_eq!(ce.time, "2026-03-14T09:26:54Z");
    assert_eq!(
        ce.traceparent,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    );
    assert_eq!(ce.tracestate, "");
}

#[test]
fn envelope_under_data_base64() {
    // A raw subscription, or a publish with a binary content type.
    let envelope = fixture_text(Topic::TaskDueSoon);
    let ce = json!({
        "data_base64": base64::engine::general_purpose::STANDARD.encode(envelope.as_bytes()),
        "datacontenttype": "application/octet-stream",
        "id": "a1f7d5c2-0000-4000-8000-000000000000",
        "pubsubname": "todo-pubsub",
        "source": "Dapr",
        "specversion": "1.0",
        "topic": "task-due-soon",
        "type": "com.dapr.event.sent",
    });
    let delivery = decode::<TaskDueSoon>(&bytes(&ce)).unwrap();
    assert_eq!(delivery.envelope, task_due_soon());
    assert_eq!(
        delivery.cloud_event.datacontenttype,
        "application/octet-stream"
    );
    assert_eq!(delivery.cloud_event.event_type, "com.dapr.event.sent");
}

#[test]
fn envelope_as_a_json_string_under_data() {
    // Published with a non-JSON content type, e.g. text/plain.
    let mut ce = created_cloud_event();
    ce["data"] = Value::String(fixture_text(Topic::TaskCreated));
    ce["datacontenttype"] = json!("text/plain");
    let delivery = decode::<TaskCreated>(&bytes(&ce)).unwrap();
    assert_eq!(delivery.envelope, task_created());
    assert_eq!(delivery.cloud_event.datacontenttype, "text/plain");
}

#[test]
fn raw_payload_is_the_envelope_itself() {
    let delivery = decode::<TaskCreated>(fixture_text(Topic::TaskCreated).as_bytes()).unwrap();
    assert_eq!(delivery.envelope, task_created());
    assert_eq!(
        delivery.cloud_event,
        events::CloudEventAttributes::default()
    );
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    let mut ce = created_cloud_event();
    ce["expiration"] = json!("2026-03-14T10:26:54Z");
    ce["x-custom-extension"] = json!({"any": ["thing"]});
    ce["data"]["priority_hint"] = json!("new envelope field");
    ce["data"]["data"]["labels"] = json!(["new payload field"]);
    ce["data"]["data"]["task"]["colour"] = json!("blue");
    let delivery = decode::<TaskCreated>(&bytes(&ce)).unwrap();
    assert_eq!(delivery.envelope, task_created());
}

#[test]
fn optional_fields_may_be_missing() {
    let mut envelope = fixture_value(Topic::TaskCreated);
    let object = envelope.as_object_mut().unwrap();
    object.remove("causation_id");
    let task = object["data"]["task"].as_object_mut().unwrap();
    task.remove("description");
    task.remove("due_date");
    let delivery = decode::<TaskCreated>(&bytes(&envelope)).unwrap();
    let mut expected = task_created();
    expected.data.task.description = String::new();
    expected.data.task.due_date = None;
    assert_eq!(delivery.envelope, expected);
}

#[test]
fn timestamps_with_an_offset_are_normalised_to_utc() {
    let mut envelope = fixture_value(Topic::TaskCreated);
    envelope["timestamp"] = json!("2026-03-14T10:26:53.589793+01:00");
    let delivery = decode::<TaskCreated>(&bytes(&envelope)).unwrap();
    assert_eq!(delivery.envelope.timestamp, task_created().timestamp);
}

#[test]
fn decode_any_returns_attributes_and_the_untyped_envelope() {
    let ce = created_cloud_event();
    let (attributes, envelope) = decode_any(&bytes(&ce)).unwrap();
    assert_eq!(attributes.topic, "task-created");
    assert_eq!(envelope, fixture_value(Topic::TaskCreated));

    let (attributes, envelope) = decode_any(fixture_text(Topic::TaskDueSoon).as_bytes()).unwrap();
    assert_eq!(attributes, events::CloudEventAttributes::default());
    assert_eq!(envelope["event_type"], "task-due-soon");
}

#[test]
fn body_that_is_not_json() {
    let err = decode_err::<TaskCreated>(b"{\"data\": oops");
    assert!(matches!(err, DecodeError::NotJson(_)), "{err:?}");
    assert!(err.to_string().contains("not JSON"), "{err}");
    assert!(matches!(
        decode_any(b"\xff\xfe").unwrap_err(),
        DecodeError::NotJson(_)
    ));
}

#[test]
fn body_that_is_not_an_object() {
    for body in [&b"[1,2,3]"[..], b"\"task-created\"", b"42", b"null"] {
        let err = decode_err::<TaskCreated>(body);
        assert!(matches!(err, DecodeError::NotAnObject), "{err:?}");
        assert!(err.to_string().contains("not an object"), "{err}");
    }
}

#[test]
fn cloud_event_without_data() {
    let mut ce = created_cloud_event();
    ce.as_object_mut().unwrap().remove("data");
    let err = decode_err::<TaskCreated>(&bytes(&ce));
    assert!(matches!(err, DecodeError::MissingData), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("`data`") && message.contains("`data_base64`"),
        "{message}"
    );

    ce["data"] = Value::Null;
    let err = decode_err::<TaskCreated>(&bytes(&ce));
    assert!(matches!(err, DecodeError::MissingData), "{err:?}");
}

#[test]
fn data_base64_that_is_not_base64() {
    let mut ce = created_cloud_event();
    ce.as_object_mut().unwrap().remove("data");
    ce["data_base64"] = json!("this is *not* base64!");
    let err = decode_err::<TaskCreated>(&bytes(&ce));
    assert!(matches!(err, DecodeError::Base64(_)), "{err:?}");
    assert!(err.to_string().contains("`data_base64`"), "{err}");
}

#[test]
fn data_base64_that_is_not_a_string() {
    let mut ce = created_cloud_event();
    ce.as_object_mut().unwrap().remove("data");
    ce["data_base64"] = json!([1, 2, 3]);
    let err = decode_err::<TaskCreated>(&bytes(&ce));
    assert!(matches!(err, DecodeError::Base64NotAString), "{err:?}");
    assert!(
        err.to_string().contains("`data_base64` is not a string"),
        "{err}"
    );
}

#[test]
fn null_data_base64_beside_data_is_ignored() {
    let mut ce = created_cloud_event();
    ce["data_base64"] = Value::Null;
    let delivery = decode::<TaskCreated>(&bytes(&ce)).unwrap();
    assert_eq!(delivery.envelope, task_created());
}

#[test]
fn data_string_that_is_not_json() {
    let mut ce = created_cloud_event();
    ce["data"] = json!("task created, see attached");
    let err = decode_err::<TaskCreated>(&bytes(&ce));
    assert!(matches!(err, DecodeError::DataNotJson(_)), "{err:?}");
    assert!(err.to_string().contains("not a JSON envelope"), "{err}");

    // The same through base64: valid base64, but the bytes inside are not JSON.
    let mut ce = created_cloud_event();
    ce.as_object_mut().unwrap().remove("data");
    ce["data_base64"] = json!(base64::engine::general_purpose::STANDARD.encode("plain text"));
    let err = decode_err::<TaskCreated>(&bytes(&ce));
    assert!(matches!(err, DecodeError::DataNotJson(_)), "{err:?}");
}

#[test]
fn event_of_another_type() {
    let err = decode_err::<TaskUpdated>(&bytes(&created_cloud_event()));
    match &err {
        DecodeError::WrongEventType { expected, found } => {
            assert_eq!(*expected, "task-updated");
            assert_eq!(found, "task-created");
        }
        other => panic!("wrong variant: {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("`task-updated`") && message.contains("`task-created`"),
        "{message}"
    );
}

#[test]
fn missing_field_error_names_the_field_and_its_path() {
    let mut ce = created_cloud_event();
    ce["data"]["data"]["task"]
        .as_object_mut()
        .unwrap()
        .remove("user_email");
    let err = decode_err::<TaskCreated>(&bytes(&ce));
    match &err {
        DecodeError::Envelope { expected, source } => {
            assert_eq!(*expected, "task-created");
            assert_eq!(source.path().to_string(), "data.task");
        }
        other => panic!("wrong variant: {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("data.task"), "{message}");
    assert!(message.contains("user_email"), "{message}");
}

#[test]
fn mistyped_field_error_names_the_field_path() {
    let mut envelope = fixture_value(Topic::TaskCreated);
    envelope["data"]["task"]["version"] = json!("two");
    let err = decode_err::<TaskCreated>(&bytes(&envelope));
    assert!(matches!(err, DecodeError::Envelope { .. }), "{err:?}");
    assert!(err.to_string().contains("data.task.version"), "{err}");

    let mut envelope = fixture_value(Topic::TaskCreated);
    envelope["data"]["task"]["priority"] = json!("whenever");
    let err = decode_err::<TaskCreated>(&bytes(&envelope));
    assert!(err.to_string().contains("data.task.priority"), "{err}");

    let mut envelope = fixture_value(Topic::TaskCreated);
    envelope["timestamp"] = json!("yesterday");
    let err = decode_err::<TaskCreated>(&bytes(&envelope));
    let message = err.to_string();
    assert!(
        message.contains("timestamp") && message.contains("RFC 3339"),
        "{message}"
    );
}

#[test]
fn missing_event_type_is_a_field_error() {
    let mut envelope = fixture_value(Topic::TaskCreated);
    envelope.as_object_mut().unwrap().remove("event_type");
    let err = decode_err::<TaskCreated>(&bytes(&envelope));
    assert!(matches!(err, DecodeError::Envelope { .. }), "{err:?}");
    assert!(err.to_string().contains("event_type"), "{err}");
}

#[test]
fn newer_schema_version_is_refused() {
    let mut ce = created_cloud_event();
    ce["data"]["schema_version"] = json!(2);
    let err = decode_err::<TaskCreated>(&bytes(&ce));
    match &err {
        DecodeError::UnsupportedSchemaVersion {
            event_type,
            found,
            supported,
        } => {
            assert_eq!(*event_type, "task-created");
            assert_eq!((*found, *supported), (2, 1));
        }
        other => panic!("wrong variant: {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("schema version 2") && message.contains("(1)"),
        "{message}"
    );
}
