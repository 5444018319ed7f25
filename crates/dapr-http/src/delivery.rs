//! What a subscription handler receives ([`Event`], [`RawEvent`]) and answers ([`Outcome`]).

use axum::Json;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use events::{CloudEventAttributes, Envelope};
use serde_json::Value;

/// A handler's verdict on one delivery, answered to daprd as HTTP 200 with a status body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed (or already processed: a duplicate); daprd acks it.
    Success,
    /// A transient failure; daprd redelivers per its resiliency policy / the broker.
    Retry(String),
    /// A permanent failure (poison message); daprd sends it to the dead-letter topic, if any.
    Drop(String),
}

impl Outcome {
    /// The status daprd expects (case-sensitive).
    pub fn status(&self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Retry(_) => "RETRY",
            Self::Drop(_) => "DROP",
        }
    }

    /// The reason given with `Retry`/`Drop`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Success => None,
            Self::Retry(reason) | Self::Drop(reason) => Some(reason),
        }
    }
}

impl IntoResponse for Outcome {
    /// Always 200: daprd reads the decision from the body. (A 404 would make daprd drop the
    /// event without dead-lettering it, so it is never used.)
    fn into_response(self) -> Response {
        Json(serde_json::json!({ "status": self.status() })).into_response()
    }
}

/// A delivery decoded into a typed envelope.
#[derive(Debug, Clone)]
pub struct Event<T> {
    pub envelope: Envelope<T>,
    /// CloudEvent attributes (`id` is the dedupe key; `traceparent` continues the trace).
    pub cloud_event: CloudEventAttributes,
    /// The delivery's HTTP headers (`pubsubname`, broker metadata, `traceparent`), without
    /// `dapr-api-token`.
    pub headers: HeaderMap,
}

impl<T> Event<T> {
    /// The id to deduplicate on: the CloudEvent id when present (it equals the envelope's
    /// `event_id` for events published by this crate), else the envelope's `event_id`.
    pub fn dedupe_id(&self) -> String {
        if self.cloud_event.id.is_empty() {
            self.envelope.event_id.to_string()
        } else {
            self.cloud_event.id.clone()
        }
    }

    /// The `traceparent` to continue: the delivery header (daprd's child span), else the
    /// CloudEvent attribute.
    pub fn traceparent(&self) -> Option<&str> {
        traceparent(&self.headers, &self.cloud_event)
    }
}

/// A delivery of any type: the CloudEvent attributes and the untyped envelope.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub cloud_event: CloudEventAttributes,
    /// The envelope (the CloudEvent's `data`, decoded from `data_base64` or a JSON string when
    /// needed), or the whole body when it was not a CloudEvent.
    pub data: Value,
    /// The delivery's HTTP headers, without `dapr-api-token`.
    pub headers: HeaderMap,
    /// The exact bytes delivered.
    pub body: Bytes,
}

impl RawEvent {
    /// See [`Event::traceparent`].
    pub fn traceparent(&self) -> Option<&str> {
        traceparent(&self.headers, &self.cloud_event)
    }
}

fn traceparent<'a>(headers: &'a HeaderMap, ce: &'a CloudEventAttributes) -> Option<&'a str> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .or_else(|| Some(ce.traceparent.as_str()).filter(|v| !v.is_empty()))
}
