//! The scan: find the reminders that are due and publish each one once.
//!
//! A scan reads the due-date buckets from its persisted watermark up to the bucket holding
//! `now + lead time` (the span and the watermark's rules are in `watermark`), so its cost
//! follows the tasks due in the window, not the number of tasks tracked. Each entry is checked
//! against the task's projection (current due date, version, reminded flag) before anything is
//! published; then, in this order:
//! 1. publish `task-due-soon` with the deterministic id of (task, due date),
//! 2. mark the record reminded for that due date (etag),
//! 3. drop the entry from its bucket (etag).
//!
//! A crash between 1 and 2 publishes the same event id again on the next scan, which downstream
//! deduplication absorbs. An entry the scan could not settle (a failed step, or not due yet)
//! keeps the watermark at its bucket, so the next scan reads it again however long the failure
//! lasts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::buckets::{Bucket, Buckets};
use crate::context::Context;
use crate::error::Error;
use crate::filing::unfile_all;
use crate::policy::{Verdict, evaluate, reminder};
use crate::record::{TaskRecord, task_key};
use crate::store::Change;
use crate::watermark::{Span, after_scan};
pub use crate::watermark::{WATERMARK_KEY, Watermark};
use crate::{metrics, tracked};

/// Keys per bulk read.
const BULK_CHUNK: usize = 500;
/// Reminders published at once.
const PUBLISH_CONCURRENCY: usize = 16;

/// What one scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub buckets_read: usize,
    pub candidates: usize,
    pub published: usize,
    pub dropped: usize,
    /// The watermark after the scan: the first bucket the next scan must read.
    pub watermark: i64,
}

/// One bucket entry with what the projection says about it.
struct Candidate {
    bucket: i64,
    task: Uuid,
    filed_version: u64,
}

/// Runs one scan at the context clock's `now`. Call only while holding the lease; the lease is
/// checked again before every publish.
pub async fn scan(ctx: &Context) -> Result<ScanReport, Error> {
    let started = Instant::now();
    let now = ctx.clock.now();
    let grid = ctx.policy.buckets;
    let edge = grid.start_of(ctx.policy.horizon(now));
    let lookback = i64::try_from(ctx.scan_lookback.as_secs()).unwrap_or(i64::MAX);
    let mark = ctx.store.read::<Watermark>(WATERMARK_KEY).await?;
    let span = Span::of(mark.value.as_ref(), edge, grid.start_of(now), lookback);

    let starts: Vec<i64> = grid.starts(span.from, span.to).collect();
    let candidates = read_candidates(ctx, &starts).await?;
    let records = read_records(ctx, &candidates).await?;

    let mut report = ScanReport {
        buckets_read: starts.len(),
        candidates: candidates.len(),
        ..ScanReport::default()
    };
    // Buckets holding an entry this scan had to act on and could not: the watermark stops at
    // the first one.
    let mut unsettled = BTreeSet::new();
    let mut removals: BTreeMap<i64, Vec<(Uuid, u64)>> = BTreeMap::new();
    let mut due = Vec::new();
    for c in &candidates {
        let record = records.get(&c.task);
        match evaluate(record, c.filed_version, c.bucket, now, &ctx.policy) {
            Verdict::Remind => {
                if let Some(r) = record {
                    due.push((c.bucket, r.clone()));
                }
            }
            Verdict::Drop => {
                if let Some(r) = record {
                    removals
                        .entry(c.bucket)
                        .or_default()
                        .push((c.task, r.version));
                    report.dropped += 1;
                }
            }
            Verdict::NotYet => {
                unsettled.insert(c.bucket);
            }
            // The handler writing that projection checks the watermark once it has written
            // it (see `filing`), so such an entry need not hold the scanner back.
            Verdict::Pending => {}
        }
    }

    let jobs: Vec<_> = due
        .into_iter()
        .map(|(bucket, record)| remind_in(ctx, bucket, record, now))
        .collect();
    let results = futures::stream::iter(jobs)
        .buffer_unordered(PUBLISH_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let mut lease_lost = false;
    let mut failed = 0usize;
    let mut first_error = None;
    for (bucket, result) in results {
        match result {
            Ok(Some((task, version))) => {
                report.published += 1;
                removals.entry(bucket).or_default().push((task, version));
            }
            Ok(None) => {}
            Err(Error::LeaseLost) => lease_lost = true,
            Err(error) => {
                failed += 1;
                unsettled.insert(bucket);
                tracing::debug!(%error, bucket, "reminder not published");
                first_error.get_or_insert(error);
            }
        }
    }
    if lease_lost {
        return Err(Error::LeaseLost);
    }

    for (bucket, entries) in removals {
        if let Err(error) = unfile_all(ctx, bucket, &entries).await {
            unsettled.insert(bucket);
            tracing::warn!(%error, bucket, "bucket entries not removed; retried next scan");
        }
    }
    let first_unsettled = unsettled.first().copied();
    let next = after_scan(mark.value.as_ref(), span, first_unsettled);
    report.watermark = next.or(mark.value).map_or(span.to, |w| w.next_bucket);
    if let Some(next) = next {
        write_watermark(ctx, &next, mark.etag.as_deref()).await?;
    }
    if let Some(error) = first_error {
        tracing::warn!(%error, failed, watermark = report.watermark,
            "reminders not published; the watermark waits for them and the next scan retries");
    }
    metrics::scan_lag(edge.saturating_sub(report.watermark));
    match tracked::total(&ctx.store).await {
        Ok(total) => metrics::tracked_tasks(total),
        Err(error) => tracing::debug!(%error, "tracked-task count not read"),
    }
    metrics::scan_finished(started.elapsed(), report.candidates);
    Ok(report)
}

async fn read_candidates(ctx: &Context, starts: &[i64]) -> Result<Vec<Candidate>, Error> {
    let mut candidates = Vec::new();
    for chunk in starts.chunks(BULK_CHUNK) {
        let keys: Vec<String> = chunk.iter().copied().map(Buckets::key).collect();
        let items = ctx
            .dapr
            .get_bulk_state::<Bucket>(&ctx.store.name, &keys)
            .await?;
        for (start, item) in chunk.iter().zip(items) {
            if let Some(error) = item.error {
                return Err(Error::Dapr(dapr_http::DaprError::Server {
                    status: 500,
                    code: "ERR_STATE_BULK_GET".into(),
                    message: format!("bucket {}: {error}", item.key),
                }));
            }
            for (task, filed_version) in item.value.unwrap_or_default().tasks {
                candidates.push(Candidate {
                    bucket: *start,
                    task,
                    filed_version,
                });
            }
        }
    }
    Ok(candidates)
}

async fn read_records(
    ctx: &Context,
    candidates: &[Candidate],
) -> Result<BTreeMap<Uuid, TaskRecord>, Error> {
    let mut ids: Vec<Uuid> = candidates.iter().map(|c| c.task).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut records = BTreeMap::new();
    for chunk in ids.chunks(BULK_CHUNK) {
        let keys: Vec<String> = chunk.iter().copied().map(task_key).collect();
        let items = ctx
            .dapr
            .get_bulk_state::<TaskRecord>(&ctx.store.name, &keys)
            .await?;
        for (id, item) in chunk.iter().zip(items) {
            if let Some(record) = item.value {
                records.insert(*id, record);
            }
        }
    }
    Ok(records)
}

async fn remind_in(
    ctx: &Context,
    bucket: i64,
    record: TaskRecord,
    now: DateTime<Utc>,
) -> (i64, Result<Option<(Uuid, u64)>, Error>) {
    (bucket, remind(ctx, &record, now).await)
}

/// Publishes the reminder of `record`, then marks it sent. `Ok(Some((task, version)))` when
/// the entry can be dropped from its bucket.
async fn remind(
    ctx: &Context,
    record: &TaskRecord,
    now: DateTime<Utc>,
) -> Result<Option<(Uuid, u64)>, Error> {
    let Some(envelope) = reminder(record, &ctx.app_id, now) else {
        return Ok(None);
    };
    if !ctx.lease.is_held() {
        return Err(Error::LeaseLost);
    }
    publish_reminder(ctx, record, &envelope).await?;
    metrics::published();
    tracing::info!(task_id = %record.task_id, due_date = %envelope.data.due_date,
        event_id = %envelope.event_id, "reminder published");
    let due = envelope.data.due_date;
    let marked = ctx
        .store
        .update::<TaskRecord, _>(&task_key(record.task_id), |current| match current {
            Some(mut r) if r.open && r.due_date == Some(due) && r.reminded_for != Some(due) => {
                r.reminded_for = Some(due);
                Change::Save(r)
            }
            _ => Change::Keep,
        })
        .await?;
    Ok(Some((
        record.task_id,
        marked.map_or(record.version, |r| r.version),
    )))
}

/// Publishes a reminder. When traces are exported the publish is a span in the trace of the
/// event that set the due date (kept with the record), linked to the scan that found it due.
async fn publish_reminder(
    ctx: &Context,
    record: &TaskRecord,
    envelope: &events::Envelope<events::TaskDueSoon>,
) -> Result<(), Error> {
    let scan = dapr_http::spans::span_context(&tracing::Span::current());
    // The task's trace decides (its stored `traceparent` carries the sampled flag).
    let span = dapr_http::spans::traced_from(record.traceparent.as_deref(), || {
        let span = tracing::info_span!(
            "reminder",
            otel.name = "reminder publish",
            otel.kind = "producer",
            task_id = %record.task_id,
            event_id = %envelope.event_id,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        dapr_http::spans::link(&span, scan);
        span
    });
    let Some(span) = span else {
        return Ok(ctx.dapr.publish(&ctx.pubsub, envelope).await?);
    };
    let published = ctx
        .dapr
        .publish(&ctx.pubsub, envelope)
        .instrument(span.clone())
        .await;
    if let Err(error) = &published {
        dapr_http::spans::fail(&span, error);
    }
    Ok(published?)
}

async fn write_watermark(ctx: &Context, next: &Watermark, etag: Option<&str>) -> Result<(), Error> {
    match ctx.store.write(WATERMARK_KEY, next, etag, None).await {
        Ok(()) => Ok(()),
        // Another scanner moved it meanwhile: it holds the lease now.
        Err(error) if error.is_write_conflict() => Err(Error::LeaseLost),
        Err(error) => Err(error.into()),
    }
}
