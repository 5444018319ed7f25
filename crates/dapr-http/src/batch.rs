//! Batch handlers for bulk subscriptions (Dapr's `bulkSubscribe`): the sidecar POSTs
//! `{"entries":[{"entryId","event","contentType","metadata"}], ...}` and reads
//! `{"statuses":[{"entryId","status"}]}` back, one SUCCESS/RETRY/DROP per entry, as the Dapr docs
//! page "Publish and subscribe to bulk messages" describes. An entry left out of `statuses` is
//! retried by the sidecar, so an outcome missing from a handler's answer is a RETRY.
//!
//! The same route also takes single deliveries (a sidecar that does not batch, or the
//! second-chance route), handing the handler a batch of one.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Outcome;

/// The `bulkSubscribe` element of a subscription (int32 fields, as daprd declares them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkSubscribe {
    pub enabled: bool,
    /// Most entries per batch; 0 means the sidecar's default (100).
    pub max_messages_count: i32,
    /// Longest wait for a batch to fill; 0 means the sidecar's default (1000 ms).
    pub max_await_duration_ms: i32,
}

impl BulkSubscribe {
    /// Batches of at most `max_messages` entries, sent once the first has waited `max_await`.
    /// Values beyond int32 are clamped to it.
    pub fn new(max_messages: usize, max_await: Duration) -> Self {
        Self {
            enabled: true,
            max_messages_count: i32::try_from(max_messages).unwrap_or(i32::MAX),
            max_await_duration_ms: i32::try_from(max_await.as_millis()).unwrap_or(i32::MAX),
        }
    }
}

/// One entry as a handler gets it: the event's bytes and the delivery headers plus the
/// entry's metadata.
pub(crate) struct RawEntry {
    pub body: Bytes,
    pub headers: HeaderMap,
}

type BatchFuture = Pin<Box<dyn Future<Output = Vec<Outcome>> + Send>>;
/// A batch handler over raw entries; answers one outcome per entry, in order.
pub(crate) type BatchHandler<S> = Arc<dyn Fn(S, Vec<RawEntry>) -> BatchFuture + Send + Sync>;

/// Wraps a handler of decoded items: entries that do not decode are answered by `undecodable`
/// (DROP) without reaching it; a missing outcome is a RETRY.
pub(crate) fn decoding<S, I, D, H, Fut>(decode: D, handler: H) -> BatchHandler<S>
where
    S: Send + 'static,
    I: Send + 'static,
    D: Fn(RawEntry) -> Result<I, Outcome> + Send + Sync + 'static,
    H: Fn(S, Vec<I>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<Outcome>> + Send + 'static,
{
    let decode = Arc::new(decode);
    let handler = Arc::new(handler);
    Arc::new(move |state: S, entries: Vec<RawEntry>| {
        let decode = Arc::clone(&decode);
        let handler = Arc::clone(&handler);
        Box::pin(async move {
            let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(entries.len());
            let mut positions = Vec::with_capacity(entries.len());
            let mut items = Vec::with_capacity(entries.len());
            for entry in entries {
                match decode(entry) {
                    Ok(item) => {
                        positions.push(outcomes.len());
                        outcomes.push(None);
                        items.push(item);
                    }
                    Err(outcome) => outcomes.push(Some(outcome)),
                }
            }
            if !items.is_empty() {
                let answered = handler(state, items).await;
                for (position, outcome) in positions.iter().zip(answered) {
                    outcomes[*position] = Some(outcome);
                }
            }
            outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(|| Outcome::Retry("handler gave no outcome".into())))
                .collect()
        })
    })
}

/// The bulk envelope, as far as the app needs it.
#[derive(Deserialize)]
struct Envelope {
    entries: Vec<WireEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEntry {
    entry_id: String,
    #[serde(default)]
    event: Value,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryStatus {
    entry_id: String,
    status: &'static str,
}

/// Whether `body` is a bulk envelope rather than a single CloudEvent.
fn is_batch(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default, rename = "type")]
        kind: String,
    }
    serde_json::from_slice::<Kind>(body).is_ok_and(|k| k.kind == "com.dapr.event.sent.bulk")
}

/// An entry's event as bytes: the CloudEvent re-encoded, or a raw payload decoded from base64.
fn event_bytes(entry: &WireEntry) -> Result<Bytes, String> {
    match &entry.event {
        Value::String(b64) if !entry.content_type.contains("json") => {
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(Bytes::from)
                .map_err(|e| format!("raw payload is not base64: {e}"))
        }
        event => serde_json::to_vec(event)
            .map(Bytes::from)
            .map_err(|e| e.to_string()),
    }
}

/// Answers one POST on a batch route: a bulk envelope gets per-entry statuses; a single
/// delivery goes through the handler as a batch of one and gets a single status.
pub(crate) async fn answer<S>(
    handler: &BatchHandler<S>,
    state: S,
    body: Bytes,
    headers: HeaderMap,
    topic: &str,
) -> Response {
    if !is_batch(&body) {
        let outcome = handler(state, vec![RawEntry { body, headers }])
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| Outcome::Retry("handler gave no outcome".into()));
        return outcome.into_response();
    }
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(topic, error = %e, "malformed batch, answering 400 (the sidecar retries it)");
            return (StatusCode::BAD_REQUEST, format!("malformed batch: {e}")).into_response();
        }
    };
    let mut ids = Vec::with_capacity(envelope.entries.len());
    let mut entries = Vec::with_capacity(envelope.entries.len());
    let mut bad: Vec<String> = Vec::new();
    for entry in envelope.entries {
        match event_bytes(&entry) {
            Ok(body) => {
                // The batch's own trace headers belong to no entry: each entry's event names
                // its trace (the sidecar's span for that entry), unless its metadata does.
                let mut entry_headers = headers.clone();
                entry_headers.remove("traceparent");
                entry_headers.remove("tracestate");
                for (k, v) in entry.metadata.iter().flatten() {
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(v),
                    ) {
                        entry_headers.insert(name, value);
                    }
                }
                ids.push(entry.entry_id);
                entries.push(RawEntry {
                    body,
                    headers: entry_headers,
                });
            }
            Err(error) => {
                tracing::warn!(topic, entry_id = %entry.entry_id, %error, "undecodable batch entry, answering DROP");
                bad.push(entry.entry_id);
            }
        }
    }
    let count = ids.len();
    let outcomes = if entries.is_empty() {
        Vec::new()
    } else {
        handler(state, entries).await
    };
    let mut statuses: Vec<EntryStatus> = ids
        .into_iter()
        .zip(
            outcomes
                .into_iter()
                .map(Some)
                .chain(std::iter::repeat(None)),
        )
        .take(count)
        .map(|(entry_id, outcome)| EntryStatus {
            entry_id,
            // Left out would mean the same to the sidecar; said explicitly for the log.
            status: outcome.map_or("RETRY", |o| o.status()),
        })
        .collect();
    statuses.extend(bad.into_iter().map(|entry_id| EntryStatus {
        entry_id,
        status: "DROP",
    }));
    tracing::debug!(topic, entries = statuses.len(), "batch handled");
    Json(serde_json::json!({ "statuses": statuses })).into_response()
}
