//! Recording events: every delivery on a business topic becomes one entry in the task's trail and
//! one in the user's trail, written once whatever the number of deliveries.

use chrono::Utc;
use dapr_http::{Outcome, RawEvent};

use crate::context::Context;
use crate::entry::{Entry, EntryDraft};
use crate::error::Error;
use crate::trail::{Appended, TrailId};
use RecordError::{Failed, Unrecordable};

/// The trails an entry about `task_id`/`user_id` goes to.
pub fn trails_for(draft: &EntryDraft) -> Vec<TrailId> {
    let mut trails = Vec::with_capacity(2);
    if let Some(task) = draft.task_id.as_deref().filter(|t| valid_id(t)) {
        trails.push(TrailId::Task(task.to_owned()));
    }
    if let Some(user) = draft.user_id.as_deref().filter(|u| valid_id(u)) {
        trails.push(TrailId::User(user.to_owned()));
    }
    trails
}

/// Ids become part of state keys: refuse what could break a key (daprd rejects `||`).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && !id.contains("||") && !id.contains(char::is_control)
}

/// Appends `draft` to each of `trails`; returns the new entries (none for a duplicate).
pub async fn append_everywhere(
    ctx: &Context,
    trails: &[TrailId],
    draft: &EntryDraft,
) -> Result<Vec<(TrailId, Entry)>, Error> {
    let mut added = Vec::new();
    for trail in trails {
        let kind = match trail {
            TrailId::Task(_) => "task",
            TrailId::User(_) => "user",
            TrailId::DeadLetters => "dead_letters",
        };
        match ctx.trails.append(trail, draft.clone()).await? {
            Appended::New(entry) => {
                metrics::counter!("audit_entries_total", "topic" => draft.topic.clone(), "trail" => kind)
                    .increment(1);
                ctx.sink.write(&trail.name(), &entry);
                added.push((trail.clone(), *entry));
            }
            Appended::Duplicate { seq } => {
                metrics::counter!("audit_duplicates_total", "topic" => draft.topic.clone(), "trail" => kind)
                    .increment(1);
                tracing::debug!(trail = %trail.name(), entry_id = %draft.entry_id, seq, "already recorded");
            }
        }
    }
    Ok(added)
}

/// Handles one delivery on business topic `topic`.
pub async fn on_event(ctx: &Context, topic: &str, event: RawEvent) -> Outcome {
    let Some(draft) = EntryDraft::from_envelope(
        topic,
        &event.cloud_event.id,
        &event.cloud_event.source,
        &event.data,
        Utc::now(),
    ) else {
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

/// Why recording did not happen.
#[derive(Debug)]
pub enum RecordError {
    /// Permanent: the event names no task and no user.
    Unrecordable(String),
    /// Transient (store trouble, contention).
    Failed(Error),
}

/// Records an event's entry in its trails, and joins a `notification-failed` to its dead letter.
pub async fn record(
    ctx: &Context,
    draft: &EntryDraft,
    envelope: &serde_json::Value,
) -> Result<(), RecordError> {
    let trails = trails_for(draft);
    if trails.is_empty() {
        return Err(Unrecordable(
            "the event names no valid task_id or user_id".into(),
        ));
    }
    append_everywhere(ctx, &trails, draft)
        .await
        .map_err(Failed)?;
    if draft.topic == events::Topic::NotificationFailed.as_str() {
        crate::dead_letters::note_failure(ctx, envelope)
            .await
            .map_err(Failed)?;
    }
    Ok(())
}
