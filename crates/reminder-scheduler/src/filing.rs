//! Bucket entries: filing a task, taking it out, and keeping a fresh filing in front of the
//! scanner.
//!
//! A handler computes a task's bucket from its own clock and writes the entry some time later.
//! By then the scanner may have moved its watermark past that bucket: its clock may be ahead of
//! the handler's, or a scan may have read the bucket just before the entry was written. So once
//! the projection naming the bucket is stored, the handler reads the watermark; if it is past
//! the bucket, the entry moves up to the watermark's bucket (filed there, the record pointed at
//! it, the old entry dropped), and the check repeats for the new bucket. If the watermark is at
//! or before the bucket, the scan after the next move reads it (see `watermark`). The check
//! compares bucket positions in the store, never clocks, so it holds whatever the skew between
//! replicas and whatever `SCAN_LOOKBACK` is.

use uuid::Uuid;

use crate::buckets::{Bucket, Buckets};
use crate::context::Context;
use crate::error::Error;
use crate::record::{TaskRecord, task_key};
use crate::store::{Change, MAX_ATTEMPTS};
use crate::watermark::{WATERMARK_KEY, Watermark};

/// Files `task` (at `version`) in `bucket`; a newer filing already there is kept.
pub async fn file(ctx: &Context, bucket: i64, task: Uuid, version: u64) -> Result<(), Error> {
    ctx.store
        .update::<Bucket, _>(&Buckets::key(bucket), |b| {
            let mut b = b.unwrap_or_default();
            if b.file(task, version) {
                Change::Save(b)
            } else {
                Change::Keep
            }
        })
        .await?;
    Ok(())
}

/// Removes `task` (filed at `version` or earlier) from `bucket`, deleting the bucket when empty.
pub async fn unfile(ctx: &Context, bucket: i64, task: Uuid, version: u64) -> Result<(), Error> {
    unfile_all(ctx, bucket, &[(task, version)]).await
}

/// Removes each `(task, version)` entry (filed at that version or earlier) from `bucket` in one
/// read-modify-write, deleting the bucket when it ends up empty.
pub async fn unfile_all(ctx: &Context, bucket: i64, entries: &[(Uuid, u64)]) -> Result<(), Error> {
    ctx.store
        .update::<Bucket, _>(&Buckets::key(bucket), |b| match b {
            None => Change::Keep,
            Some(mut b) => {
                let changed = entries.iter().fold(false, |acc, (task, version)| {
                    b.unfile(*task, *version) | acc
                });
                if !changed {
                    Change::Keep
                } else if b.is_empty() {
                    Change::Delete
                } else {
                    Change::Save(b)
                }
            }
        })
        .await?;
    Ok(())
}

/// Makes sure a scan still reads the entry of `task` (at `version`) in `bucket`, whose record is
/// already stored, by moving it up to the watermark's bucket if the watermark is past it.
/// Returns whether it moved. An error leaves the delivery to be retried: the redelivery, a
/// duplicate of the applied version, runs this check again.
pub async fn keep_ahead_of_scanner(
    ctx: &Context,
    task: Uuid,
    version: u64,
    mut bucket: i64,
) -> Result<bool, Error> {
    let mut moved = false;
    for _ in 0..MAX_ATTEMPTS {
        let mark = ctx.store.read::<Watermark>(WATERMARK_KEY).await?;
        let Some(next) = mark.value.map(|w| w.next_bucket).filter(|n| *n > bucket) else {
            return Ok(moved);
        };
        file(ctx, next, task, version).await?;
        let record = ctx
            .store
            .update::<TaskRecord, _>(&task_key(task), |r| match r {
                Some(mut r) if r.version == version && r.filed_in == Some(bucket) => {
                    r.filed_in = Some(next);
                    Change::Save(r)
                }
                _ => Change::Keep,
            })
            .await?;
        let repointed = record.is_some_and(|r| r.version == version && r.filed_in == Some(next));
        // Either way the old entry is obsolete: the record points at the new one, or a newer
        // event has filed the task itself (and runs this check for its own filing).
        let obsolete = if repointed { bucket } else { next };
        if let Err(error) = unfile(ctx, obsolete, task, version).await {
            tracing::warn!(%error, bucket = obsolete, task_id = %task,
                "could not remove an obsolete bucket entry; the scanner will drop it");
        }
        if !repointed {
            return Ok(moved);
        }
        tracing::info!(task_id = %task, from = bucket, to = next,
            "task was filed behind the scanner; moved up to its watermark");
        bucket = next;
        moved = true;
    }
    Err(Error::Contended {
        key: WATERMARK_KEY.to_owned(),
        attempts: MAX_ATTEMPTS,
    })
}
