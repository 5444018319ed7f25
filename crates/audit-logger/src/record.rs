//! Recording events: every delivery on a business topic becomes one entry in the task's trail and
//! one in the user's trail, written once whatever the number of deliveries.

use chrono::Utc;
use dapr_http::{Outcome, RawEvent};

use crate::context::Context;
use crate::dead_letters;
use crate::entry::EntryDraft;
pub use crate::fanout::RecordError;
use crate::fanout::{record_batch, record_entry};
use RecordError::{Failed, Unrecordable};

/// Handles one delivery on business topic `topic`.
pub async fn on_event(ctx: &Context, topic: &str, event: RawEvent) -> Outcome {
    let Some(draft) = EntryDraft::from_envelope(
        topic,
        &event.cloud_event.id,
        &event.cloud_event.source,
        &event.data,
        Utc::now(),
    )
    .map(|draft| draft.traced(event.traceparent())) else {
        tracing::warn!(topic, "event without an id, answering DROP");
        return Outcome::Drop("the event has no event_id and no CloudEvent id".into());
    };
    match record(ctx, &draft, &event.data).await {
        Ok(()) => Outcome::Success,
        Err(Unrecordable(reason)) => {
            tracing::warn!(topic, event_id = %draft.event_id, %reason, "event cannot be recorded, answering DROP");
            Outcome::Drop(reason)
        }
        Err(Failed(error)) => {
            tracing::warn!(topic, event_id = %draft.event_id, %error, "recording failed, answering RETRY");
            error.outcome()
        }
    }
}

/// Records an event's entry in its trails, and joins a `notification-failed` to its dead letter.
pub async fn record(
    ctx: &Context,
    draft: &EntryDraft,
    envelope: &serde_json::Value,
) -> Result<(), RecordError> {
    record_entry(ctx, draft).await?;
    if draft.topic == events::Topic::NotificationFailed.as_str() {
        dead_letters::note_failure(ctx, envelope)
            .await
            .map_err(Failed)?;
    }
    Ok(())
}

/// Handles a batch of deliveries on business topic `topic`: one batch append per trail for the
/// whole batch; one outcome per event, in order. When traces are exported each entry gets an
/// `audit append` span in its own event's trace, lasting the batch's append, since one span
/// cannot belong to the several traces a batch mixes.
pub async fn on_batch(ctx: &Context, topic: &str, events: Vec<RawEvent>) -> Vec<Outcome> {
    let now = Utc::now();
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(events.len());
    let mut drafts = Vec::with_capacity(events.len());
    let mut positions = Vec::with_capacity(events.len());
    let mut spans = Vec::new();
    for event in &events {
        match EntryDraft::from_envelope(
            topic,
            &event.cloud_event.id,
            &event.cloud_event.source,
            &event.data,
            now,
        )
        .map(|draft| draft.traced(event.traceparent()))
        {
            Some(draft) => {
                spans.push(entry_span(&draft, event.traceparent()));
                positions.push(outcomes.len());
                outcomes.push(None);
                drafts.push(draft);
            }
            None => {
                tracing::warn!(topic, "event without an id, answering DROP");
                outcomes.push(Some(Outcome::Drop(
                    "the event has no event_id and no CloudEvent id".into(),
                )));
            }
        }
    }
    let recorded = record_batch(ctx, &drafts).await;
    for (span, result) in spans.iter().zip(&recorded) {
        let Some(span) = span else { continue };
        match result {
            Ok(()) => {}
            Err(Unrecordable(reason)) => dapr_http::spans::fail(span, reason),
            Err(Failed(error)) => dapr_http::spans::fail(span, error),
        }
    }
    drop(spans);
    for ((position, draft), result) in positions.into_iter().zip(&drafts).zip(recorded) {
        let result = match result {
            Ok(()) if draft.topic == events::Topic::NotificationFailed.as_str() => {
                dead_letters::note_failure(ctx, &events[position].data)
                    .await
                    .map_err(Failed)
            }
            other => other,
        };
        outcomes[position] = Some(match result {
            Ok(()) => Outcome::Success,
            Err(Unrecordable(reason)) => {
                tracing::warn!(topic, event_id = %draft.event_id, %reason, "event cannot be recorded, answering DROP");
                Outcome::Drop(reason)
            }
            Err(Failed(error)) => {
                tracing::warn!(topic, event_id = %draft.event_id, %error, "recording failed, answering RETRY");
                error.outcome()
            }
        });
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Retry("event was not recorded".into())))
        .collect()
}

/// The span of one batch entry's append, continuing the trace of the delivery that brought it,
/// when that trace is sampled.
fn entry_span(draft: &EntryDraft, traceparent: Option<&str>) -> Option<tracing::Span> {
    dapr_http::spans::traced_from(traceparent, || {
        tracing::info_span!(
            "append",
            otel.name = "audit append",
            audit.entry_id = %draft.entry_id,
            audit.batch = true,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        )
    })
}
