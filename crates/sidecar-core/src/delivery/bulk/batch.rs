//! Delivery of one batch, in the order of daprd's bulk subscription handler
//! (`pkg/runtime/subscription/bulksubscription.go`, `bulkresiliency.go
//! applyBulkSubscribeResiliency`, `postman/http/http.go DeliverBulk`):
//!
//! 1. Each entry is decoded, checked for expiry and routed on its own, as in single delivery;
//!    what cannot be sent is settled at once (dropped or failed) without holding up the rest.
//! 2. Entries are grouped by route: one POST per distinct path, with the envelope
//!    `{"entries":[{"entryId","event","contentType","metadata"}],"id","metadata","pubsubname",
//!    "topic","type":"com.dapr.event.sent.bulk"}`.
//! 3. Each POST is one attempt under the pub/sub's inbound resiliency policy; a retry re-sends
//!    only the entries still failed, with their entry ids and the batch id unchanged. A timeout,
//!    a transport error or a non-2xx answer fails every entry of that attempt.
//! 4. Each entry is then settled like a single message: success acks; `DROP` dead-letters (then
//!    acks); 404 acks without dead-lettering; still failed dead-letters or goes back to the
//!    component, entry by entry.
//!
//! With tracing on, each entry is a `pubsub/<topic>` span of its own, child of its event's
//! trace, and the entry's event carries that span as its `traceparent` (daprd starts one span
//! per bulk entry in `bulksubscription.go`), so the app's handling of an entry joins the trace
//! of the publish that produced it, as with single delivery.

use super::Waiting;
use super::answer::{BulkAnswer, EntryStatus, interpret};
use crate::cloudevent;
use crate::components::Message;
use crate::delivery::deliver::{APP_UNHEALTHY, Deliverer, Disposal, FailedAttempt};
use crate::observe::{Delivery, Outcome};
use crate::otel::SidecarSpan;
use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// How an entry sent to the app ended, before it is settled.
enum Ended {
    Success,
    Drop,
    NotFound,
}

/// An entry on its way to the app.
struct Entry {
    index: usize,
    id: String,
    json: Value,
}

/// Delivers `batch` and answers each waiting handler call with its own entry's result.
pub(super) async fn settle(d: Arc<Deliverer>, batch: Vec<Waiting>) {
    if !d.state.app_is_healthy() {
        for w in batch {
            let _ = w.done.send(Err(APP_UNHEALTHY.into()));
        }
        return;
    }
    let mut results: Vec<Option<Result<(), Disposal>>> = batch.iter().map(|_| None).collect();
    let mut routes: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    let mut spans: BTreeMap<usize, SidecarSpan> = BTreeMap::new();
    for (index, w) in batch.iter().enumerate() {
        match d.prepare(&w.msg) {
            Ok(prepared) => {
                let mut event = prepared.event;
                if let Some(tracer) = &d.state.tracer {
                    let span = tracer.start(prepared.traceparent.as_deref(), || {
                        (
                            format!("pubsub/{}", w.msg.topic),
                            crate::otel::delivery_attributes(&w.msg.topic),
                        )
                    });
                    if let Value::Object(ce) = &mut event {
                        ce.insert("traceparent".into(), Value::String(span.traceparent()));
                    }
                    spans.insert(index, span);
                }
                let entry = to_entry(&d, index, &w.msg, event);
                routes.entry(prepared.path).or_default().push(entry);
            }
            Err(disposal) => {
                d.report_unsent(&w.msg, &disposal);
                results[index] = Some(Err(disposal));
            }
        }
    }
    let observer = d.state.runtime.tap().observer();
    let sends = routes.into_iter().map(|(path, entries)| {
        let d = &d;
        async move {
            let started = std::time::Instant::now();
            let (attempts, results) = send_with_retries(d, path.clone(), entries).await;
            (path, attempts, started.elapsed(), results)
        }
    });
    for (path, attempts, latency, outcome) in futures::future::join_all(sends).await {
        for (index, result) in outcome {
            if let (Some(observer), Some(w)) = (&observer, batch.get(index)) {
                let id = crate::observe::event_id(&w.msg.data);
                // The app answered the batch 200 with a status per entry unless it failed whole.
                let (kind, status, error) = match &result {
                    Ok(()) => (Outcome::Success, Some(200), None),
                    Err(Disposal::Drop(r)) => (Outcome::Drop, Some(200), Some(r.as_str())),
                    Err(Disposal::Fail(r)) => (Outcome::Error, None, Some(r.as_str())),
                };
                observer.delivered(&Delivery {
                    attempt: attempts,
                    outcome: kind,
                    status,
                    latency,
                    error,
                    ..d.observed(&w.msg.topic, id.as_deref(), &path)
                });
            }
            if let Some(span) = spans.remove(&index) {
                match &result {
                    Ok(()) | Err(Disposal::Drop(_)) => span.end_with_http_status(200),
                    Err(Disposal::Fail(reason)) => span.end_with_error(reason.clone()),
                }
            }
            results[index] = Some(result);
        }
    }
    let settles = batch.into_iter().zip(results).map(|(w, result)| {
        let d = d.clone();
        async move {
            let result = result.unwrap_or_else(|| Err(Disposal::Fail("entry was not sent".into())));
            let settled = d.dispose(&w.msg, result).await;
            let _ = w.done.send(settled);
        }
    });
    futures::future::join_all(settles).await;
}

/// The JSON of one entry. Unlike single delivery the event goes parsed, not as the stored
/// bytes; a raw-payload subscription gets the payload as base64 (`bulksubscription.go`).
fn to_entry(d: &Deliverer, index: usize, msg: &Message, event: Value) -> Entry {
    let id = uuid::Uuid::new_v4().to_string();
    let (event, content_type) = if d.raw {
        let payload = base64::engine::general_purpose::STANDARD.encode(&msg.data);
        (Value::String(payload), "application/octet-stream")
    } else {
        (event, cloudevent::CLOUDEVENT_CONTENT_TYPE)
    };
    let json = json!({
        "entryId": id,
        "event": event,
        "contentType": content_type,
        "metadata": msg.metadata,
    });
    Entry { index, id, json }
}

/// Sends the entries routed to `path` under the inbound policy; the result of each entry by
/// its index in the batch.
async fn send_with_retries(
    d: &Deliverer,
    path: String,
    entries: Vec<Entry>,
) -> (u32, Vec<(usize, Result<(), Disposal>)>) {
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let attempts_ref = &attempts;
    let batch_id = uuid::Uuid::new_v4().to_string();
    let count = entries.len();
    // Entries still to send; an attempt moves the ones the app settled into `ended`, and only
    // once it has the full answer, so an attempt cut off by a timeout changes nothing.
    let pending = Mutex::new(entries);
    let ended: Mutex<Vec<(usize, Ended)>> = Mutex::new(Vec::with_capacity(count));
    let (pending_ref, ended_ref, path_ref, id_ref) =
        (&pending, &ended, path.as_str(), batch_id.as_str());
    let attempt = move || async move {
        attempts_ref.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = envelope(d, id_ref, &lock(pending_ref));
        let answer = post(d, path_ref, body).await;
        let mut pending = lock(pending_ref);
        let mut ended = lock(ended_ref);
        match answer {
            BulkAnswer::NotFound => {
                ended.extend(pending.drain(..).map(|e| (e.index, Ended::NotFound)));
                Ok(())
            }
            BulkAnswer::AllFailed { status, reason } => Err(FailedAttempt { status, reason }),
            BulkAnswer::Statuses(statuses) => {
                let mut reason = None;
                pending.retain(|e| match statuses.get(&e.id) {
                    Some(EntryStatus::Success) => {
                        ended.push((e.index, Ended::Success));
                        false
                    }
                    Some(EntryStatus::Drop) => {
                        ended.push((e.index, Ended::Drop));
                        false
                    }
                    Some(EntryStatus::Retry(why)) => {
                        reason.get_or_insert_with(|| why.clone());
                        true
                    }
                    None => {
                        reason
                            .get_or_insert_with(|| "entry missing from the app's statuses".into());
                        true
                    }
                });
                match reason {
                    None => Ok(()),
                    // A 2xx answer carries no error code: always retriable, like a RETRY body.
                    Some(reason) => Err(FailedAttempt {
                        status: None,
                        reason: format!(
                            "{} of the batch's entries failed: {reason}",
                            pending.len()
                        ),
                    }),
                }
            }
        }
    };
    let run = d
        .runner
        .run(attempt, FailedAttempt::class, Some(&d.state.shutdown))
        .await;
    let failure = run.err().map(|e| e.to_string());
    let mut out: Vec<(usize, Result<(), Disposal>)> = Vec::with_capacity(count);
    for (index, end) in lock(&ended).drain(..) {
        let result = match end {
            Ended::Success => Ok(()),
            Ended::NotFound => {
                tracing::error!(app_id = %d.state.app_id(), topic = %d.def.topic, %path, "app answered 404 to a batch: entry dropped without dead-lettering");
                Ok(())
            }
            Ended::Drop => Err(Disposal::Drop("app answered DROP".into())),
        };
        out.push((index, result));
    }
    let reason = failure.unwrap_or_else(|| "delivery failed".into());
    for e in lock(&pending).drain(..) {
        out.push((e.index, Err(Disposal::Fail(reason.clone()))));
    }
    (attempts.load(std::sync::atomic::Ordering::Relaxed), out)
}

/// A poisoned lock only means another attempt panicked mid-way; the data is still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The request body for the entries still pending (`NewBulkSubscribeEnvelope`).
fn envelope(d: &Deliverer, batch_id: &str, entries: &[Entry]) -> Vec<u8> {
    let body = json!({
        "id": batch_id,
        "type": "com.dapr.event.sent.bulk",
        "topic": d.def.topic,
        "pubsubname": d.def.pubsubname,
        "metadata": {"pubsubName": d.def.pubsubname},
        "entries": entries.iter().map(|e| &e.json).collect::<Vec<_>>(),
    });
    // Serialising a `Value` cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// One POST of a batch to the app.
async fn post(d: &Deliverer, path: &str, body: Vec<u8>) -> BulkAnswer {
    let failed = |reason: String| BulkAnswer::AllFailed {
        status: None,
        reason,
    };
    // The app channel refuses calls to an unhealthy app (`pkg/channel/http/http_channel.go`).
    if !d.state.app_is_healthy() {
        return failed(APP_UNHEALTHY.into());
    }
    let Some(base) = d.state.app_base_url() else {
        return failed("no app channel".into());
    };
    let Ok(_permit) = d.semaphore.acquire().await else {
        return failed("delivery closed".into());
    };
    let mut req = d
        .state
        .client
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("pubsubName", &d.def.pubsubname)
        .body(body);
    if let Some(token) = &d.state.opts.app_api_token {
        req = req.header(crate::tokens::TOKEN_HEADER, token);
    }
    let response = tokio::select! {
        r = req.send() => r,
        _ = d.state.shutdown.cancelled() => return failed("sidecar shutting down".into()),
    };
    match response {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(bytes) => interpret(status, &bytes),
                Err(e) => failed(format!("error reading the app's answer to a batch: {e}")),
            }
        }
        Err(e) => failed(format!("error sending a batch to the app: {e}")),
    }
}
