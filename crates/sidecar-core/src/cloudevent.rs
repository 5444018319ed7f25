//! CloudEvent envelopes as daprd builds them on publish (`NewCloudEvent` in daprd's
//! `pkg/runtime/pubsub/cloudevents.go`, over `NewCloudEventsEnvelope` and `FromCloudEvent` in
//! components-contrib's `pubsub/envelope.go`) and for raw-payload subscriptions
//! (`FromRawPayload`, same file).
//!
//! Output is serialised with sorted keys at every level and `<`, `>`, `&`, U+2028, U+2029
//! escaped inside strings, as Go's `encoding/json` does; payload numbers keep their literals
//! ([`gojson`]).

use base64::Engine;
use chrono::{SecondsFormat, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Default CloudEvent `type`.
pub const DEFAULT_TYPE: &str = "com.dapr.event.sent";
/// `Content-Type` of a body that already is a CloudEvent.
pub const CLOUDEVENT_CONTENT_TYPE: &str = "application/cloudevents+json";

/// W3C trace context of the publish request's span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: String,
}

impl TraceContext {
    /// A child span of the incoming `traceparent` (same trace id and flags), or a fresh unsampled
    /// root span when there is none or it is malformed.
    pub fn child_of(traceparent: Option<&str>, tracestate: Option<&str>) -> Self {
        let context = trace_context::TraceParent::from_header(traceparent).map_or_else(
            || trace_context::TraceParent::root(false),
            |parent| parent.child(),
        );
        Self {
            traceparent: context.to_string(),
            tracestate: tracestate.unwrap_or_default().to_string(),
        }
    }
}

/// Publish time as daprd writes it: RFC 3339, seconds, `Z` in UTC.
pub fn now_rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Everything needed to wrap one published payload.
#[derive(Debug, Clone)]
pub struct Publication<'a> {
    pub app_id: &'a str,
    pub pubsub: &'a str,
    pub topic: &'a str,
    /// The request `Content-Type`; `text/plain` when absent.
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// Publish metadata (without the `metadata.` prefix).
    pub metadata: &'a BTreeMap<String, String>,
    pub trace: &'a TraceContext,
}

/// Why a body could not be turned into an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is JSON but not an object; the text is Go's `json.Unmarshal` error.
    #[error("json: cannot unmarshal {0} into Go value of type map[string]interface {{}}")]
    NotAnObject(&'static str),
    #[error("{0}")]
    NotJson(String),
}

/// Whether `content_type` names `expected`, as components-contrib's `isContentType`
/// (`contenttype/utils.go`) decides: case-insensitive, either the whole value or the part before
/// the first `;`, with no trimming (`application/json ;charset=utf-8` is not JSON).
pub fn content_type_is(content_type: &str, expected: &str) -> bool {
    let lower = content_type.to_ascii_lowercase();
    lower == expected
        || lower
            .split_once(';')
            .is_some_and(|(media, _)| media == expected)
}

/// Whether the body must be sent as-is (a `CLOUDEVENT_CONTENT_TYPE` body).
pub fn is_cloudevent(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| content_type_is(ct, CLOUDEVENT_CONTENT_TYPE))
}

/// A CloudEvent as daprd holds it before marshalling: attribute name to canonical JSON text
/// (see [`gojson`]), so payload numbers keep their literals.
#[derive(Debug, Clone, Default)]
pub struct Envelope(BTreeMap<String, Box<RawValue>>);

impl Envelope {
    fn set(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_string(), gojson::raw_string(value));
    }

    /// The attribute's JSON text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|raw| raw.get())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Go's `m[key] == nil`: absent or JSON `null`.
    fn is_nil(&self, key: &str) -> bool {
        self.get(key).is_none_or(|text| text == "null")
    }

    /// The broker bytes: Go's `json.Marshal` of the envelope map.
    pub fn to_go_json(&self) -> Vec<u8> {
        // Keys are strings and values valid JSON, so serialising cannot fail.
        let text = serde_json::to_string(&self.0).unwrap_or_default();
        gojson::escape_html(&text)
    }
}

/// The `cloudevent.<name>` publish metadata, matched case-insensitively (daprd's `NewCloudEvent`
/// in `pkg/runtime/pubsub/cloudevents.go` decodes them with mapstructure's `WeakDecode`).
fn overrides(metadata: &BTreeMap<String, String>) -> HashMap<String, &str> {
    metadata
        .iter()
        .filter_map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            lower
                .strip_prefix("cloudevent.")
                .map(|name| (name.to_string(), v.as_str()))
        })
        .collect()
}

/// Builds the CloudEvent for a publish whose body is not already a CloudEvent
/// (`NewCloudEvent`, then `NewCloudEventsEnvelope` and `ApplyMetadata`).
pub fn wrap(p: &Publication<'_>) -> Envelope {
    let overrides = overrides(p.metadata);
    // An override replaces the value daprd starts from, even with "", and
    // `NewCloudEventsEnvelope` puts its own defaults in for an empty id, source, type and
    // content type: an empty `cloudevent.source` gives "Dapr", not the app id.
    let given = |name: &str, start: &str| -> String {
        overrides.get(name).copied().unwrap_or(start).to_string()
    };
    let non_empty = |v: String, default: String| if v.is_empty() { default } else { v };
    let content_type = p
        .content_type
        .filter(|ct| !ct.is_empty())
        .unwrap_or("text/plain");
    let mut ce = Envelope::default();
    let id = non_empty(given("id", ""), uuid::Uuid::new_v4().to_string());
    ce.set("id", &id);
    ce.set(
        "source",
        &non_empty(given("source", p.app_id), "Dapr".into()),
    );
    ce.set("type", &non_empty(given("type", ""), DEFAULT_TYPE.into()));
    ce.set("specversion", "1.0");
    ce.set("datacontenttype", content_type);
    payload(&mut ce, content_type, p.body);
    ce.set("topic", p.topic);
    ce.set("pubsubname", p.pubsub);
    // A non-empty traceparent override wins over traceid; traceid (even "") sets both.
    let trace = match overrides.get("traceparent").filter(|tp| !tp.is_empty()) {
        Some(tp) => tp.to_string(),
        None => given("traceid", &p.trace.traceparent),
    };
    ce.set("traceid", &trace);
    ce.set("traceparent", &trace);
    ce.set("tracestate", &given("tracestate", &p.trace.tracestate));
    ce.set("time", &now_rfc3339());
    if let Some(exp) = expiration(p.metadata, Utc::now()) {
        ce.set("expiration", &exp);
    }
    ce
}

/// `data` or `data_base64` as `NewCloudEventsEnvelope` places the body. A JSON body is decoded
/// like `unmarshalPrecise`: its first value counts, whatever follows is ignored; a body with no
/// JSON value at its start becomes a string.
fn payload(ce: &mut Envelope, content_type: &str, body: &[u8]) {
    if content_type_is(content_type, "application/octet-stream")
        || content_type_is(content_type, "application/cloudevents+protobuf")
    {
        let encoded = base64::engine::general_purpose::STANDARD.encode(body);
        ce.set("data_base64", &encoded);
        return;
    }
    // Go decodes invalid UTF-8 inside strings to U+FFFD and marshals a string the same way.
    let text = String::from_utf8_lossy(body);
    let json = content_type_is(content_type, "application/json")
        .then(|| gojson::first_value(&text))
        .flatten()
        .and_then(|raw| gojson::canonical(raw).ok());
    match json {
        Some(data) => {
            ce.0.insert("data".into(), data);
        }
        None => ce.set("data", &text),
    }
}

/// Completes a CloudEvent the app sent itself (`FromCloudEvent`, then `ApplyMetadata`).
pub fn complete(p: &Publication<'_>) -> Result<Envelope, EnvelopeError> {
    let text = String::from_utf8_lossy(p.body);
    let first = gojson::first_value(&text)
        .ok_or_else(|| EnvelopeError::NotJson("not a JSON document".into()))?;
    let kind = match first.get().as_bytes().first() {
        Some(b'{') => None,
        Some(b'[') => Some("array"),
        Some(b'"') => Some("string"),
        Some(b't' | b'f') => Some("bool"),
        Some(b'n') => Some("null"),
        _ => Some("number"),
    };
    if let Some(kind) = kind {
        return Err(EnvelopeError::NotAnObject(kind));
    }
    let members: BTreeMap<String, &RawValue> =
        serde_json::from_str(first.get()).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let mut ce = Envelope::default();
    for (k, v) in members {
        let v = gojson::canonical(v).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        ce.0.insert(k, v);
    }
    if !ce.contains("time") {
        ce.set("time", &now_rfc3339());
    }
    if !ce.contains("traceid") {
        ce.set("traceid", &p.trace.traceparent);
        ce.set("traceparent", &p.trace.traceparent);
    }
    if !ce.contains("tracestate") {
        ce.set("tracestate", &p.trace.tracestate);
    }
    ce.set("topic", p.topic);
    ce.set("pubsubname", p.pubsub);
    // Go checks these for nil, so an explicit `null` gets the default too.
    for (key, default) in [
        ("source", "Dapr"),
        ("type", DEFAULT_TYPE),
        ("specversion", "1.0"),
    ] {
        if ce.is_nil(key) {
            ce.set(key, default);
        }
    }
    if let Some(exp) = expiration(p.metadata, Utc::now()) {
        ce.set("expiration", &exp);
    }
    Ok(ce)
}

/// The CloudEvent a raw-payload subscription delivers (`FromRawPayload`): a fresh envelope
/// around the bytes.
pub fn wrap_raw_for_delivery(
    pubsub: &str,
    topic: &str,
    data: &[u8],
    metadata: &BTreeMap<String, String>,
) -> Map<String, Value> {
    let mut ce = Map::new();
    ce.insert("id".into(), uuid::Uuid::new_v4().to_string().into());
    ce.insert("source".into(), "Dapr".into());
    ce.insert("type".into(), DEFAULT_TYPE.into());
    ce.insert("specversion".into(), "1.0".into());
    ce.insert("datacontenttype".into(), "application/octet-stream".into());
    ce.insert("topic".into(), topic.into());
    ce.insert("pubsubname".into(), pubsub.into());
    ce.insert(
        "data_base64".into(),
        base64::engine::general_purpose::STANDARD
            .encode(data)
            .into(),
    );
    for key in ["traceid", "traceparent", "tracestate"] {
        if let Some(v) = crate::metadata::get_ci(metadata, key) {
            ce.insert(key.into(), v.into());
        }
    }
    ce
}

mod expiry;
mod gojson;
pub use expiry::{expiration, is_expired};
pub use gojson::{sorted, to_go_json};

#[cfg(test)]
mod tests;
