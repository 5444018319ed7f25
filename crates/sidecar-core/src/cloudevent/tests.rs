#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use chrono::DateTime;

fn trace() -> TraceContext {
    TraceContext::child_of(None, None)
}

fn publish(ct: Option<&str>, body: &[u8], meta: &[(&str, &str)]) -> Map<String, Value> {
    let metadata: BTreeMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let t = trace();
    let p = Publication {
        app_id: "task-api",
        pubsub: "todo-pubsub",
        topic: "task-created",
        content_type: ct,
        body,
        metadata: &metadata,
        trace: &t,
    };
    let ce = if is_cloudevent(ct) {
        complete(&p).unwrap()
    } else {
        wrap(&p)
    };
    // What a subscriber sees: the marshalled envelope.
    serde_json::from_slice(&ce.to_go_json()).unwrap()
}

fn published_text(ct: Option<&str>, body: &[u8], meta: &[(&str, &str)]) -> String {
    let metadata: BTreeMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let t = trace();
    let p = Publication {
        app_id: "task-api",
        pubsub: "todo-pubsub",
        topic: "task-created",
        content_type: ct,
        body,
        metadata: &metadata,
        trace: &t,
    };
    let ce = if is_cloudevent(ct) {
        complete(&p).unwrap()
    } else {
        wrap(&p)
    };
    String::from_utf8(ce.to_go_json()).unwrap()
}

#[test]
fn json_body_is_embedded_with_daprd_defaults() {
    let ce = publish(Some("application/json"), br#"{"b":1,"a":"x"}"#, &[]);
    assert_eq!(ce["data"], serde_json::json!({"a":"x","b":1}));
    assert_eq!(ce["source"], "task-api");
    assert_eq!(ce["type"], DEFAULT_TYPE);
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["datacontenttype"], "application/json");
    assert_eq!(ce["topic"], "task-created");
    assert_eq!(ce["pubsubname"], "todo-pubsub");
    assert_eq!(ce["tracestate"], "");
    assert_eq!(ce["traceid"], ce["traceparent"]);
    let id = ce["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    let time = ce["time"].as_str().unwrap();
    assert!(DateTime::parse_from_rfc3339(time).is_ok());
    assert!(!time.contains('.'), "second precision: {time}");
    assert!(!ce.contains_key("expiration") && !ce.contains_key("subject"));
}

#[test]
fn content_type_is_passed_through_verbatim_and_defaults_to_text_plain() {
    let ce = publish(Some("application/json; charset=utf-8"), b"[1]", &[]);
    assert_eq!(ce["datacontenttype"], "application/json; charset=utf-8");
    assert_eq!(ce["data"], serde_json::json!([1]));
    let ce = publish(None, b"hello", &[]);
    assert_eq!(ce["datacontenttype"], "text/plain");
    assert_eq!(ce["data"], "hello");
}

#[test]
fn invalid_json_becomes_a_string_and_vendor_json_is_text() {
    let ce = publish(Some("application/json"), b"{not json", &[]);
    assert_eq!(ce["data"], "{not json");
    let ce = publish(Some("application/vnd.x+json"), br#"{"a":1}"#, &[]);
    assert_eq!(ce["data"], r#"{"a":1}"#);
}

#[test]
fn octet_stream_goes_to_data_base64() {
    let ce = publish(Some("application/octet-stream"), &[0, 1, 2, 255], &[]);
    assert_eq!(ce["data_base64"], "AAEC/w==");
    assert!(!ce.contains_key("data"));
}

#[test]
fn overrides_are_case_insensitive_and_traceparent_wins() {
    let ce = publish(
        Some("application/json"),
        b"{}",
        &[
            ("CloudEvent.Id", "e1"),
            ("cloudevent.type", "task-created"),
            ("cloudevent.source", "elsewhere"),
            ("cloudevent.traceid", "tid"),
            ("cloudevent.traceparent", "tp"),
            ("cloudevent.tracestate", "k=v"),
        ],
    );
    assert_eq!(ce["id"], "e1");
    assert_eq!(ce["type"], "task-created");
    assert_eq!(ce["source"], "elsewhere");
    assert_eq!(ce["traceid"], "tp");
    assert_eq!(ce["traceparent"], "tp");
    assert_eq!(ce["tracestate"], "k=v");
    let ce = publish(Some("text/plain"), b"x", &[("cloudevent.traceid", "only")]);
    assert_eq!(ce["traceparent"], "only");
}

#[test]
fn ttl_sets_expiration_and_bad_ttl_is_ignored() {
    let ce = publish(Some("text/plain"), b"x", &[("ttlInSeconds", "60")]);
    let exp = DateTime::parse_from_rfc3339(ce["expiration"].as_str().unwrap()).unwrap();
    let delta = exp.with_timezone(&Utc) - Utc::now();
    assert!(delta.num_seconds() > 50 && delta.num_seconds() <= 60);
    assert!(!is_expired(&ce, Utc::now()));
    let ce = publish(Some("text/plain"), b"x", &[("ttlInSeconds", "soon")]);
    assert!(!ce.contains_key("expiration"));
}

#[test]
fn own_cloudevent_is_completed_not_replaced() {
    let body =
        br#"{"id":"mine","custom":"keep","traceparent":"old","topic":"wrong","data":{"x":1}}"#;
    let ce = publish(
        Some("application/cloudevents+json"),
        body,
        &[("cloudevent.type", "ignored")],
    );
    assert_eq!(ce["id"], "mine");
    assert_eq!(ce["custom"], "keep");
    assert_eq!(ce["topic"], "task-created");
    assert_eq!(ce["source"], "Dapr");
    assert_eq!(ce["type"], DEFAULT_TYPE);
    assert_ne!(
        ce["traceparent"], "old",
        "overwritten when traceid is absent"
    );
    assert_eq!(ce["traceid"], ce["traceparent"]);
    assert!(!ce.contains_key("datacontenttype"));
    let no_id = publish(Some("application/cloudevents+json"), b"{}", &[]);
    assert!(!no_id.contains_key("id"));
}

#[test]
fn own_cloudevent_must_be_an_object() {
    let metadata = BTreeMap::new();
    let t = trace();
    let p = Publication {
        app_id: "a",
        pubsub: "p",
        topic: "t",
        content_type: Some(CLOUDEVENT_CONTENT_TYPE),
        body: b"[1,2]",
        metadata: &metadata,
        trace: &t,
    };
    assert!(complete(&p).is_err());
}

#[test]
fn serialisation_sorts_keys_and_escapes_html() {
    let text = published_text(
        Some("application/json"),
        br#"{"z":"<a&b>","a":{"d":1,"c":2}}"#,
        &[],
    );
    assert!(
        text.starts_with(
            r#"{"data":{"a":{"c":2,"d":1},"z":"\u003ca\u0026b\u003e"},"datacontenttype""#
        ),
        "{text}"
    );
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back["data"]["z"], "<a&b>");
}

#[test]
fn trace_context_continues_an_incoming_trace() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let child = TraceContext::child_of(Some(parent), Some("a=b"));
    assert!(
        child
            .traceparent
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    );
    assert!(child.traceparent.ends_with("-01"));
    assert_ne!(child.traceparent, parent);
    assert_eq!(child.tracestate, "a=b");
    let fresh = TraceContext::child_of(Some("garbage"), None);
    assert_eq!(fresh.traceparent.len(), 55);
    assert!(fresh.traceparent.ends_with("-00"));
}

#[test]
fn absurd_ttls_do_not_panic() {
    let ce = publish(
        Some("text/plain"),
        b"x",
        &[("ttlInSeconds", "900000000000000")],
    );
    assert!(
        ce.contains_key("expiration"),
        "Go's seconds-to-duration product wraps around and is still used"
    );
    let ce = publish(
        Some("text/plain"),
        b"x",
        &[("ttl", "99999999999999999999h")],
    );
    assert!(!ce.contains_key("expiration"));
}
