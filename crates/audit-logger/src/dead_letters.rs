//! Dead letters: events some subscriber gave up on, with the reason when one is known, listed
//! for administrators and replayable to their original topic.
//!
//! * `dead-letter:{event_id}` — the record (source of truth; updated only with its etag).
//! * `dead-letter-reason:{event_id}` — the reason reported by email-worker's
//!   `notification-failed` (`trigger_event_id`). A dead letter and its reason can arrive in any
//!   order: each side writes its own key first and then reads the other's, so whichever comes
//!   second completes the join; listings also fill a missing reason from this key.
//! * `trail:dead-letters` — a chunked index of event ids in arrival order (see [`crate::trail`]).
//!
//! Listing and replaying are in [`crate::dead_letter_admin`].

use chrono::Utc;
use dapr_http::{Outcome, RawEvent, SaveItem};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::Context;
use crate::entry::{EntryDraft, EntryKind, timestamp};
use crate::error::Error;
use crate::fanout::{RecordError, append_everywhere, record_entry, trails_for};
use crate::trail::TrailId;

/// A dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event_id: String,
    /// The CloudEvent id of the original (what a replay publishes again).
    pub cloud_event_id: String,
    /// The CloudEvent type of the original.
    pub event_type: String,
    /// The topic it was published on (the CloudEvent `topic`; dead-lettering keeps it).
    pub original_topic: String,
    pub task_id: Option<String>,
    pub user_id: Option<String>,
    /// Every app that dropped it, in arrival order.
    pub dropped_by: Vec<Drop>,
    pub reason: Option<String>,
    /// The envelope, as JSON text, republished byte for byte by a replay.
    pub envelope: String,
    pub replays: Vec<Replay>,
}

/// One app giving up on the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drop {
    pub app_id: String,
    pub dead_letter_topic: String,
    pub received_at: String,
}

/// One replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    pub replay_id: String,
    pub replayed_at: String,
}

/// A reason reported for an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub reason: String,
    pub reported_by_event: String,
    pub failed_at: Option<String>,
}

/// A dead letter as listed by the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterView {
    #[serde(flatten)]
    pub record: DeadLetter,
    /// `pending` or `replayed`.
    pub status: &'static str,
}

pub(crate) fn record_key(event_id: &str) -> String {
    format!("dead-letter:{event_id}")
}

pub(crate) fn reason_key(event_id: &str) -> String {
    format!("dead-letter-reason:{event_id}")
}

/// The app whose sidecar dead-lettered into `topic` (`<app-id>-dead-letters`).
pub fn dropping_app(topic: &str) -> &str {
    topic.strip_suffix("-dead-letters").unwrap_or(topic)
}

/// Handles one delivery on the dead-letter topic `dlq_topic`. The message is the original
/// CloudEvent, so its `topic` attribute is still the original topic.
pub async fn on_dead_letter(ctx: &Context, dlq_topic: &str, event: RawEvent) -> Outcome {
    match store(ctx, dlq_topic, &event).await {
        Ok(()) => Outcome::Success,
        Err(error) => {
            tracing::warn!(topic = dlq_topic, %error, "storing a dead letter failed, answering RETRY");
            // These subscriptions have no dead-letter topic, so RETRY means redelivery.
            Outcome::Retry(error.to_string())
        }
    }
}

async fn store(ctx: &Context, dlq_topic: &str, event: &RawEvent) -> Result<(), Error> {
    let app = dropping_app(dlq_topic).to_owned();
    let ce = &event.cloud_event;
    let original_topic = if ce.topic.is_empty() || ce.topic == dlq_topic {
        event
            .data
            .get("event_type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned()
    } else {
        ce.topic.clone()
    };
    let now = Utc::now();
    let Some(base) =
        EntryDraft::from_envelope(&original_topic, &ce.id, &ce.source, &event.data, now)
    else {
        tracing::warn!(
            topic = dlq_topic,
            "dead letter without any id; not storable"
        );
        return Ok(());
    };
    let event_id = base.event_id.clone();
    let drop = Drop {
        app_id: app.clone(),
        dead_letter_topic: dlq_topic.to_owned(),
        received_at: timestamp(now),
    };
    let fresh = DeadLetter {
        event_id: event_id.clone(),
        cloud_event_id: if ce.id.is_empty() {
            event_id.clone()
        } else {
            ce.id.clone()
        },
        event_type: if ce.event_type.is_empty() {
            base.event_type.clone()
        } else {
            ce.event_type.clone()
        },
        original_topic: original_topic.clone(),
        task_id: base.task_id.clone(),
        user_id: base.user_id.clone(),
        dropped_by: vec![drop.clone()],
        reason: None,
        envelope: serde_json::to_string(&event.data).unwrap_or_default(),
        replays: Vec::new(),
    };
    let new_drop = update(ctx, &event_id, Some(fresh), |record| {
        if record.dropped_by.iter().any(|d| d.app_id == app) {
            return false;
        }
        record.dropped_by.push(drop.clone());
        true
    })
    .await?;
    // The other half of the join: a reason may have arrived first.
    if let Some(reason) = read_reason(ctx, &event_id).await? {
        update(ctx, &event_id, None, |record| set_reason(record, &reason)).await?;
    }
    if new_drop {
        metrics::counter!("audit_dead_letters_total", "dropped_by" => app.clone(), "topic" => original_topic.clone())
            .increment(1);
    }
    let index_entry = EntryDraft {
        kind: EntryKind::DeadLetter,
        entry_id: format!("dead-letter:{event_id}"),
        detail: Some(format!("first dropped by {app}")),
        ..base.clone()
    };
    append_everywhere(ctx, &[TrailId::DeadLetters], &index_entry).await?;
    let trail_entry = EntryDraft {
        kind: EntryKind::DeadLetter,
        entry_id: format!("dead-letter:{app}:{event_id}"),
        detail: Some(format!("dropped by {app} (dead-letter topic {dlq_topic})")),
        ..base.clone()
    };
    append_everywhere(ctx, &trails_for(&trail_entry), &trail_entry).await?;
    // What this service itself gave up on (e.g. the store was down for the whole retry budget)
    // is recorded now, so the trail still gets the event.
    if app == ctx.app_id
        && events::Topic::ALL
            .iter()
            .any(|t| t.as_str() == original_topic)
    {
        match record_entry(ctx, &base).await {
            Ok(()) if base.topic == events::Topic::NotificationFailed.as_str() => {
                note_failure(ctx, &event.data).await?;
            }
            Ok(()) | Err(RecordError::Unrecordable(_)) => {}
            Err(RecordError::Failed(error)) => return Err(error),
        }
    }
    Ok(())
}

pub(crate) fn set_reason(record: &mut DeadLetter, reason: &Reason) -> bool {
    if record.reason.is_some() {
        return false;
    }
    record.reason = Some(reason.reason.clone());
    true
}

/// Joins a `notification-failed` envelope to the dead letter of its trigger event.
pub async fn note_failure(ctx: &Context, envelope: &Value) -> Result<(), Error> {
    let data = envelope.get("data").unwrap_or(&Value::Null);
    let Some(trigger) = data.get("trigger_event_id").and_then(Value::as_str) else {
        return Ok(());
    };
    let reason = Reason {
        reason: data
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        reported_by_event: envelope
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        failed_at: data
            .get("failed_at")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let item = SaveItem::new(reason_key(trigger), &reason)?;
    ctx.trails
        .dapr()
        .save_state(ctx.trails.store_name(), &[item])
        .await?;
    update(ctx, trigger, None, |record| set_reason(record, &reason)).await?;
    Ok(())
}

async fn read_reason(ctx: &Context, event_id: &str) -> Result<Option<Reason>, Error> {
    Ok(ctx
        .trails
        .dapr()
        .get_state::<Reason>(ctx.trails.store_name(), &reason_key(event_id))
        .await?
        .map(|e| e.value))
}

/// Reads a dead letter.
pub async fn get(ctx: &Context, event_id: &str) -> Result<Option<DeadLetter>, Error> {
    Ok(ctx
        .trails
        .dapr()
        .get_state::<DeadLetter>(ctx.trails.store_name(), &record_key(event_id))
        .await?
        .map(|e| e.value))
}

/// Read-modify-write of a record under its etag. `create` is written (first-write) when the
/// record does not exist; `change` edits an existing one and says whether it changed anything.
/// Returns whether anything was written.
pub(crate) async fn update(
    ctx: &Context,
    event_id: &str,
    create: Option<DeadLetter>,
    mut change: impl FnMut(&mut DeadLetter) -> bool,
) -> Result<bool, Error> {
    const ATTEMPTS: u32 = 32;
    let (dapr, store) = (ctx.trails.dapr(), ctx.trails.store_name());
    let key = record_key(event_id);
    for _ in 0..ATTEMPTS {
        let current = dapr.get_state::<DeadLetter>(store, &key).await?;
        let item = match (current, &create) {
            (Some(mut entry), _) => {
                if !change(&mut entry.value) {
                    return Ok(false);
                }
                SaveItem::new(&key, &entry.value)?
                    .etag(entry.etag)
                    .first_write()
            }
            (None, Some(fresh)) => SaveItem::new(&key, fresh)?.first_write(),
            (None, None) => return Ok(false),
        };
        match dapr.save_state(store, &[item]).await {
            Ok(()) => return Ok(true),
            // A conflict, or a first-write that lost a race: read again.
            Err(e) if e.is_write_conflict() => {
                tracing::debug!(%key, error = %e, "dead-letter update conflicted, retrying");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended {
        trail: key,
        attempts: ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dropping_app_comes_from_the_topic_name() {
        assert_eq!(dropping_app("email-worker-dead-letters"), "email-worker");
        assert_eq!(
            dropping_app(&events::dead_letter_topic("audit-logger")),
            "audit-logger"
        );
        assert_eq!(dropping_app("odd"), "odd");
    }
}
