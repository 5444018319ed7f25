//! Fanning one entry out to the trails it belongs to (the task's, the user's, the dead-letter
//! index), once per entry id. [`crate::record`] and [`crate::dead_letters`] both write through
//! here, so neither needs the other to put an entry in a trail.

use std::collections::HashMap;

use crate::append_many::TrailBatch;
use crate::context::Context;
use crate::entry::{Entry, EntryDraft};
use crate::error::Error;
use crate::markers::Claim;
use crate::trail::{Appended, Head, TrailId};

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
    // One marker for every trail, claimed before any of them is appended to.
    let claims = [Claim {
        entry_id: &draft.entry_id,
        trails,
    }];
    let bounds = ctx.trails.claim_all(&claims).await?;
    let bounds = bounds.first().map_or(&[][..], Vec::as_slice);
    for (i, trail) in trails.iter().enumerate() {
        let kind = trail_kind(trail);
        match ctx
            .trails
            .append_from(trail, draft.clone(), bounds.get(i).copied())
            .await?
        {
            Appended::New(entry) => {
                metrics::counter!("audit_entries_total", "topic" => draft.topic.clone(), "trail" => kind)
                    .increment(1);
                ctx.sink.write(&trail.name(), &entry);
                ctx.checkpoints.note(&trail.name(), &entry);
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

/// Why recording did not happen.
#[derive(Debug)]
pub enum RecordError {
    /// Permanent: the event names no task and no user.
    Unrecordable(String),
    /// Transient (store trouble, contention).
    Failed(Error),
}

/// Appends `draft` to the task's and the user's trail; an entry naming neither is unrecordable.
pub async fn record_entry(ctx: &Context, draft: &EntryDraft) -> Result<(), RecordError> {
    let trails = trails_for(draft);
    if trails.is_empty() {
        return Err(RecordError::Unrecordable(
            "the event names no valid task_id or user_id".into(),
        ));
    }
    append_everywhere(ctx, &trails, draft)
        .await
        .map_err(RecordError::Failed)?;
    Ok(())
}

/// Appends each of `drafts` to its trails after one claim of every draft's marker: every trail
/// in one [`crate::append_many`] (one bulk read, one bulk write when nothing spills or races),
/// then the trails' head hints in one write; one result per draft, in order. A
/// draft whose trails all took it (or already had it) is `Ok`; one that failed in any trail gets that trail's error and is recorded by a
/// redelivery, which the dedupe markers make safe.
pub async fn record_batch(ctx: &Context, drafts: &[EntryDraft]) -> Vec<Result<(), RecordError>> {
    let mut results: Vec<Result<(), RecordError>> = Vec::with_capacity(drafts.len());
    let mut per_trail: Vec<(TrailId, Vec<usize>)> = Vec::new();
    for (i, draft) in drafts.iter().enumerate() {
        let trails = trails_for(draft);
        if trails.is_empty() {
            results.push(Err(RecordError::Unrecordable(
                "the event names no valid task_id or user_id".into(),
            )));
            continue;
        }
        results.push(Ok(()));
        for trail in trails {
            match per_trail.iter_mut().find(|(t, _)| *t == trail) {
                Some((_, members)) => members.push(i),
                None => per_trail.push((trail, vec![i])),
            }
        }
    }
    // Every entry's one marker, for all its trails, in one bulk read and one write.
    let trails_of: Vec<Vec<TrailId>> = drafts.iter().map(trails_for).collect();
    let claims: Vec<Claim<'_>> = drafts
        .iter()
        .zip(&trails_of)
        .filter(|(_, trails)| !trails.is_empty())
        .map(|(draft, trails)| Claim {
            entry_id: &draft.entry_id,
            trails,
        })
        .collect();
    let bounds = match ctx.trails.claim_all(&claims).await {
        Ok(bounds) => bounds,
        Err(error) => {
            tracing::warn!(entries = claims.len(), %error, "claiming the batch's markers failed");
            let shared = std::sync::Arc::new(error);
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(RecordError::Failed(Error::Batch(shared.clone())));
            }
            return results;
        }
    };
    // Each trail's bound: the lowest of its members' slots.
    let mut from: HashMap<&TrailId, u64> = HashMap::new();
    for (claim, bounds) in claims.iter().zip(&bounds) {
        for (trail, &bound) in claim.trails.iter().zip(bounds) {
            let lowest = from.entry(trail).or_insert(bound);
            *lowest = (*lowest).min(bound);
        }
    }
    // Every trail in one bulk read and (mostly) one bulk write; see `crate::append_many`.
    let batches: Vec<TrailBatch> = per_trail
        .iter()
        .map(|(trail, members)| TrailBatch {
            trail: trail.clone(),
            drafts: members.iter().map(|&i| drafts[i].clone()).collect(),
            from: from.get(trail).copied().unwrap_or(0),
        })
        .collect();
    let appended = ctx.trails.append_many(batches).await;
    let outcomes: Vec<_> = per_trail
        .iter()
        .zip(appended)
        .map(|((trail, members), outcome)| (trail, members, outcome))
        .collect();
    // The head hints of every trail appended to, in one write once their chunks are written.
    let heads: Vec<(TrailId, Head)> = outcomes
        .iter()
        .filter_map(|(trail, _, outcome)| match outcome {
            Ok((_, Some(head))) => Some(((*trail).clone(), head.clone())),
            _ => None,
        })
        .collect();
    ctx.trails.write_heads(&heads).await;
    for (trail, members, outcome) in outcomes {
        let kind = trail_kind(trail);
        match outcome {
            Ok((appended, _)) => {
                for (&i, appended) in members.iter().zip(appended) {
                    let draft = &drafts[i];
                    match appended {
                        Appended::New(entry) => {
                            metrics::counter!("audit_entries_total", "topic" => draft.topic.clone(), "trail" => kind)
                                .increment(1);
                            ctx.sink.write(&trail.name(), &entry);
                            ctx.checkpoints.note(&trail.name(), &entry);
                        }
                        Appended::Duplicate { seq } => {
                            metrics::counter!("audit_duplicates_total", "topic" => draft.topic.clone(), "trail" => kind)
                                .increment(1);
                            tracing::debug!(trail = %trail.name(), entry_id = %draft.entry_id, seq, "already recorded");
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(trail = %trail.name(), entries = members.len(), %error, "batch append failed");
                let shared = std::sync::Arc::new(error);
                for &i in members {
                    results[i] = Err(RecordError::Failed(Error::Batch(shared.clone())));
                }
            }
        }
    }
    results
}

fn trail_kind(trail: &TrailId) -> &'static str {
    match trail {
        TrailId::Task(_) => "task",
        TrailId::User(_) => "user",
        TrailId::DeadLetters => "dead_letters",
    }
}
