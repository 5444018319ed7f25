//! CloudEvent envelopes as daprd builds them on publish (`NewCloudEvent` in daprd's
//! `pkg/runtime/pubsub/cloudevents.go`, over `NewCloudEventsEnvelope` and `FromCloudEvent` in
//! components-contrib's `pubsub/envelope.go`) and for raw-payload subscriptions
//! (`FromRawPayload`, same file).
//!
//! Output is serialised with sorted keys at every level and `<`, `>`, `&`, U+2028, U+2029
//! escaped inside strings, as Go's `encoding/json` does.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::RngCore;
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
        let mut rng = rand::rng();
        let mut span = [0u8; 8];
        rng.fill_bytes(&mut span);
        let span = hex(&span);
        let parsed = traceparent.and_then(|tp| {
            let parts: Vec<&str> = tp.trim().split('-').collect();
            let ok = parts.len() == 4
                && parts[1].len() == 32
                && parts[2].len() == 16
                && parts[3].len() == 2
                && parts
                    .iter()
                    .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
                && parts[1] != "0".repeat(32);
            ok.then(|| (parts[1].to_lowercase(), parts[3].to_lowercase()))
        });
        let (trace_id, flags) = parsed.unwrap_or_else(|| {
            let mut t = [0u8; 16];
            rng.fill_bytes(&mut t);
            (hex(&t), "00".to_string())
        });
        Self {
            traceparent: format!("00-{trace_id}-{span}-{flags}"),
            tracestate: tracestate.unwrap_or_default().to_string(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    #[error("cannot parse cloud event: {0}")]
    NotAnObject(String),
}

/// Media type without parameters, lower-cased.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether the body must be sent as-is (a `CLOUDEVENT_CONTENT_TYPE` body).
pub fn is_cloudevent(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| media_type(ct) == CLOUDEVENT_CONTENT_TYPE)
}

/// `expiration` for a publish: `ttlInSeconds` (integer) or `ttl` (Go duration); a value that
/// does not parse is ignored.
pub fn expiration(metadata: &BTreeMap<String, String>, now: DateTime<Utc>) -> Option<String> {
    let ttl = if let Some(v) = crate::metadata::get_ci(metadata, "ttlInSeconds") {
        let secs: i64 = v.trim().parse().ok()?;
        chrono::Duration::try_seconds(secs)?
    } else {
        let v = crate::metadata::get_ci(metadata, "ttl")?;
        chrono::Duration::from_std(crate::go::parse_duration(v)?).ok()?
    };
    let at = now.checked_add_signed(ttl)?;
    Some(at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Builds the CloudEvent for a publish whose body is not already a CloudEvent
/// (`NewCloudEventsEnvelope`).
pub fn wrap(p: &Publication<'_>) -> Map<String, Value> {
    let overrides: HashMap<String, &str> = p
        .metadata
        .iter()
        .filter_map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            lower
                .strip_prefix("cloudevent.")
                .map(|name| (name.to_string(), v.as_str()))
        })
        .collect();
    let content_type = p.content_type.unwrap_or("text/plain");
    let mut ce = Map::new();
    let id = overrides
        .get("id")
        .map(|s| s.to_string())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    ce.insert("id".into(), Value::String(id));
    let source = overrides.get("source").copied().unwrap_or(p.app_id);
    ce.insert("source".into(), source.into());
    let ce_type = overrides.get("type").copied().unwrap_or(DEFAULT_TYPE);
    ce.insert("type".into(), ce_type.into());
    ce.insert("specversion".into(), "1.0".into());
    ce.insert("datacontenttype".into(), content_type.into());
    let (key, data) = payload(content_type, p.body);
    ce.insert(key.into(), data);
    ce.insert("topic".into(), p.topic.into());
    ce.insert("pubsubname".into(), p.pubsub.into());
    // traceparent wins over traceid; a traceid override alone sets both.
    let trace = overrides
        .get("traceparent")
        .or_else(|| overrides.get("traceid"))
        .map(|s| s.to_string())
        .unwrap_or_else(|| p.trace.traceparent.clone());
    ce.insert("traceid".into(), trace.clone().into());
    ce.insert("traceparent".into(), trace.into());
    let tracestate = overrides
        .get("tracestate")
        .map(|s| s.to_string())
        .unwrap_or_else(|| p.trace.tracestate.clone());
    ce.insert("tracestate".into(), tracestate.into());
    ce.insert("time".into(), now_rfc3339().into());
    if let Some(exp) = expiration(p.metadata, Utc::now()) {
        ce.insert("expiration".into(), exp.into());
    }
    ce
}

fn payload(content_type: &str, body: &[u8]) -> (&'static str, Value) {
    match media_type(content_type).as_str() {
        "application/json" => match serde_json::from_slice::<Value>(body) {
            Ok(v) => ("data", v),
            Err(_) => ("data", Value::String(String::from_utf8_lossy(body).into())),
        },
        "application/octet-stream" | "application/cloudevents+protobuf" => (
            "data_base64",
            Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
        ),
        _ => ("data", Value::String(String::from_utf8_lossy(body).into())),
    }
}

/// Completes a CloudEvent the app sent itself (`FromCloudEvent`).
pub fn complete(p: &Publication<'_>) -> Result<Map<String, Value>, EnvelopeError> {
    let mut ce = match serde_json::from_slice::<Value>(p.body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(EnvelopeError::NotAnObject("not a JSON object".into())),
        Err(e) => return Err(EnvelopeError::NotAnObject(e.to_string())),
    };
    ce.insert("topic".into(), p.topic.into());
    ce.insert("pubsubname".into(), p.pubsub.into());
    ce.entry("time").or_insert_with(|| now_rfc3339().into());
    if !ce.contains_key("traceid") {
        ce.insert("traceid".into(), p.trace.traceparent.clone().into());
        ce.insert("traceparent".into(), p.trace.traceparent.clone().into());
    }
    ce.entry("tracestate")
        .or_insert_with(|| p.trace.tracestate.clone().into());
    ce.entry("source").or_insert_with(|| "Dapr".into());
    ce.entry("type").or_insert_with(|| DEFAULT_TYPE.into());
    ce.entry("specversion").or_insert_with(|| "1.0".into());
    if let Some(exp) = expiration(p.metadata, Utc::now()) {
        ce.insert("expiration".into(), exp.into());
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

/// Whether `ce` carries an `expiration` in the past.
pub fn is_expired(ce: &Map<String, Value>, now: DateTime<Utc>) -> bool {
    ce.get("expiration")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .is_some_and(|exp| exp.with_timezone(&Utc) <= now)
}

/// Sorts object keys at every level (independent of serde_json's `preserve_order`).
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(ordered.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Serialises like Go's `encoding/json`: sorted keys, HTML-safe escapes.
pub fn to_go_json(ce: Map<String, Value>) -> Vec<u8> {
    let text = sorted(Value::Object(ce)).to_string();
    // '<', '>', '&' and U+2028/9 can only occur inside JSON strings, so a plain replace is exact.
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .into_bytes()
}

#[cfg(test)]
mod tests;
