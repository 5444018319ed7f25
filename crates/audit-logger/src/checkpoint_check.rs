//! Walking a stored trail through [`crate::verify::ChainCheck`], and comparing the store with
//! signed checkpoints taken from the audit log stream ([`crate::checkpoint`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::context::Context;
use crate::error::Error;
use crate::trail::TrailId;
use crate::verify::{ChainCheck, Verification};

/// Most checkpoints checked in one request (each trail is read once, whatever its count).
pub const MAX_CHECKPOINTS: usize = 1000;

/// Chunks read per bulk request while walking a trail.
const BATCH: u64 = 16;

/// Verifies `trail` from its first chunk, also recording the hashes at `probes` (positions).
pub async fn walk(
    ctx: &Context,
    trail: &TrailId,
    probes: &[u64],
) -> Result<(Verification, BTreeMap<u64, Option<String>>), Error> {
    // Read the head first: it only ever counts entries already in the chunks read after it.
    let head = ctx.trails.head(trail).await?;
    let mut check = ChainCheck::new(&trail.name(), ctx.trails.key(), head);
    for index in probes {
        check.probe(*index);
    }
    let mut next = 0;
    loop {
        let chunks = ctx.trails.chunks(trail, next, BATCH).await?;
        let complete = chunks.len() as u64 == BATCH;
        for (n, chunk) in &chunks {
            if let Some(verdict) = check.feed(*n, chunk) {
                return Ok((verdict, check.probed().clone()));
            }
        }
        if !complete {
            let probed = check.probed().clone();
            return Ok((check.finish(), probed));
        }
        next += BATCH;
    }
}

/// How one checkpoint compares with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The trail still has the checkpoint's entry at its position, and verifies.
    Ok,
    /// The MAC is not the chain key's: the checkpoint itself is forged or altered.
    BadSignature,
    /// The name is not a trail of this service.
    UnknownTrail,
    /// The trail has fewer entries than the checkpoint saw: deleted or truncated.
    MissingEntries,
    /// The entry at the checkpoint's position has another hash: the trail was rewritten.
    HashMismatch,
    /// The stored chain itself does not verify (see `verification`).
    ChainBroken,
}

/// The verdict for one checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointResult {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    pub status: Status,
    /// The trail's length in the store (when it was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_length: Option<u64>,
    /// The stored hash at the checkpoint's position, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// The verdict for a set of checkpoints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    pub checked: usize,
    pub results: Vec<CheckpointResult>,
}

/// The trail a checkpoint names, if it is one of this service's.
pub fn trail_id(name: &str) -> Option<TrailId> {
    let valid = |id: &str| {
        (!id.is_empty() && id.len() <= 200 && !id.contains("||") && !id.contains(char::is_control))
            .then(|| id.to_owned())
    };
    if name == "trail:dead-letters" {
        return Some(TrailId::DeadLetters);
    }
    if let Some(id) = name.strip_prefix("trail:task:") {
        return valid(id).map(TrailId::Task);
    }
    name.strip_prefix("trail:user:")
        .and_then(valid)
        .map(TrailId::User)
}

/// Compares the store with `checkpoints`: each trail is walked once, with every checkpoint's
/// position probed.
pub async fn check(ctx: &Context, checkpoints: Vec<Checkpoint>) -> Result<Report, Error> {
    let mut results: Vec<Option<CheckpointResult>> = vec![None; checkpoints.len()];
    let mut by_trail: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, checkpoint) in checkpoints.iter().enumerate() {
        let status = if !checkpoint.is_authentic(ctx.trails.key()) {
            Some(Status::BadSignature)
        } else if checkpoint.length == 0 || trail_id(&checkpoint.trail).is_none() {
            Some(Status::UnknownTrail)
        } else {
            None
        };
        match status {
            Some(status) => results[i] = Some(result(checkpoint, status)),
            None => by_trail
                .entry(checkpoint.trail.clone())
                .or_default()
                .push(i),
        }
    }
    for (name, members) in by_trail {
        let Some(trail) = trail_id(&name) else {
            continue;
        };
        let probes: Vec<u64> = members.iter().map(|&i| checkpoints[i].length - 1).collect();
        let (verification, probed) = walk(ctx, &trail, &probes).await?;
        for i in members {
            let checkpoint = &checkpoints[i];
            let stored = probed.get(&(checkpoint.length - 1)).cloned().flatten();
            let mut r = result(checkpoint, Status::Ok);
            r.stored_length = Some(verification.entries);
            r.status = match &stored {
                Some(hash) if *hash != checkpoint.last_hash => {
                    r.stored_hash = Some(hash.clone());
                    Status::HashMismatch
                }
                Some(_) if verification.valid => Status::Ok,
                None if verification.valid => Status::MissingEntries,
                _ => Status::ChainBroken,
            };
            if !verification.valid {
                r.verification = Some(verification.clone());
            }
            results[i] = Some(r);
        }
    }
    let results: Vec<CheckpointResult> = results.into_iter().flatten().collect();
    Ok(Report {
        valid: results.iter().all(|r| r.status == Status::Ok),
        checked: results.len(),
        results,
    })
}

fn result(checkpoint: &Checkpoint, status: Status) -> CheckpointResult {
    CheckpointResult {
        checkpoint: checkpoint.clone(),
        status,
        stored_length: None,
        stored_hash: None,
        verification: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trail_names_are_parsed_strictly() {
        assert_eq!(trail_id("trail:task:42"), Some(TrailId::Task("42".into())));
        assert_eq!(trail_id("trail:user:u"), Some(TrailId::User("u".into())));
        assert_eq!(trail_id("trail:dead-letters"), Some(TrailId::DeadLetters));
        assert_eq!(trail_id("trail:task:"), None);
        assert_eq!(trail_id("trail:task:a||b"), None);
        assert_eq!(trail_id("dead-letter:x"), None);
    }
}
