//! What administrators do with dead letters: list them (with reasons joined) and replay them.

use bytes::Bytes;
use chrono::Utc;
use dapr_http::PublishOptions;
use serde_json::Value;

use crate::context::Context;
use crate::dead_letters::{
    DeadLetter, DeadLetterView, Reason, Replay, get, reason_key, record_key, set_reason, update,
};
use crate::entry::{EntryDraft, EntryKind, timestamp};
use crate::error::Error;
use crate::fanout::{append_everywhere, trails_for};
use crate::trail::{Cursor, TrailId};

/// A page of dead letters, oldest first.
pub async fn list(
    ctx: &Context,
    cursor: Cursor,
    limit: usize,
) -> Result<(Vec<DeadLetterView>, Option<Cursor>), Error> {
    let page = ctx
        .trails
        .page(&TrailId::DeadLetters, cursor, limit)
        .await?;
    let ids: Vec<String> = page
        .entries
        .iter()
        .map(|e| e.draft.event_id.clone())
        .collect();
    let (dapr, store) = (ctx.trails.dapr(), ctx.trails.store_name());
    let keys: Vec<String> = ids.iter().map(|id| record_key(id)).collect();
    let records = dapr.get_bulk_state::<DeadLetter>(store, &keys).await?;
    let reason_keys: Vec<String> = ids.iter().map(|id| reason_key(id)).collect();
    let reasons = dapr.get_bulk_state::<Reason>(store, &reason_keys).await?;
    let views = records
        .into_iter()
        .zip(reasons)
        .filter_map(|(record, reason)| {
            let mut record = record.value?;
            if let Some(reason) = reason.value {
                set_reason(&mut record, &reason);
            }
            Some(view(record))
        })
        .collect();
    Ok((views, page.next))
}

fn view(record: DeadLetter) -> DeadLetterView {
    let status = if record.replays.is_empty() {
        "pending"
    } else {
        "replayed"
    };
    DeadLetterView { record, status }
}

/// Republishes a dead letter's envelope to its original topic with the same CloudEvent id and
/// type, marks it replayed and records the replay in the task's (and user's) trail.
///
/// The publish comes first: if marking fails afterwards, the caller retries and the event is
/// published again, which consumers drop as a duplicate (same id). The opposite order could mark
/// a replay that never happened.
pub async fn replay(ctx: &Context, event_id: &str) -> Result<DeadLetterView, Error> {
    let Some(record) = get(ctx, event_id).await? else {
        return Err(Error::NotFound(format!(
            "no dead letter with event id {event_id}"
        )));
    };
    let opts = PublishOptions {
        cloudevent_id: Some(record.cloud_event_id.clone()),
        cloudevent_type: Some(record.event_type.clone()),
        partition_key: record.task_id.clone(),
        ..PublishOptions::default()
    };
    ctx.trails
        .dapr()
        .publish_with(
            &ctx.pubsub,
            &record.original_topic,
            Bytes::from(record.envelope.clone()),
            opts,
        )
        .await?;
    let now = Utc::now();
    let replay = Replay {
        replay_id: uuid::Uuid::now_v7().to_string(),
        replayed_at: timestamp(now),
    };
    update(ctx, event_id, None, |r| {
        r.replays.push(replay.clone());
        true
    })
    .await?;
    metrics::counter!("audit_replays_total", "topic" => record.original_topic.clone()).increment(1);
    let envelope: Value = serde_json::from_str(&record.envelope).unwrap_or(Value::Null);
    // The replay is published by this app's sidecar, so that is the publisher on record.
    if let Some(base) = EntryDraft::from_envelope(
        &record.original_topic,
        &record.cloud_event_id,
        events::REPLAYER,
        &envelope,
        now,
    ) {
        let entry = EntryDraft {
            kind: EntryKind::Replay,
            entry_id: format!("replay:{}", replay.replay_id),
            detail: Some(format!(
                "replayed to {} by an administrator",
                record.original_topic
            )),
            task_id: base.task_id.clone().or(record.task_id.clone()),
            user_id: base.user_id.clone().or(record.user_id.clone()),
            ..base
        };
        append_everywhere(ctx, &trails_for(&entry), &entry).await?;
    }
    get(ctx, event_id)
        .await?
        .map(view)
        .ok_or_else(|| Error::NotFound(format!("no dead letter with event id {event_id}")))
}
