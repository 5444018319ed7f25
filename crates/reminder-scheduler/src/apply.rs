//! Applying task events to the projection: the subscription handlers.
//!
//! Order of writes, chosen so that a crash between any two leaves nothing lost:
//! 1. file the task id in its new bucket (a hint; harmless if the record write below loses),
//! 2. write the record with the etag read (the source of truth; a conflict restarts from a
//!    fresh read),
//! 3. remove the id from its old bucket (best effort; the scanner drops stale entries anyway),
//! 4. adjust the tracked-task count,
//! 5. if the event filed the task, check that the scanner's watermark has not passed the bucket,
//!    and move the entry up to it if it has (`filing::keep_ahead_of_scanner`).
//!
//! A crash after 1 and before 2 leaves the event unacknowledged; its redelivery files again. A
//! failure in 5 answers RETRY, and the redelivery, a duplicate of the version just applied,
//! repeats the check.
//!
//! Before any of that, a task event whose CloudEvent `source` is not an app allowed to publish
//! its topic ([`events::Topic::publishers`]: task-api, or the audit-logger replaying a dead
//! letter) is acknowledged without effect and counted in `reminder_task_events_dropped_total`.

use dapr_http::{Event, Outcome, Subscriptions};
use events::{EventPayload, TaskCompleted, TaskCreated, TaskDeleted, TaskSnapshot, TaskUpdated};

use crate::context::{AppState, Context};
use crate::error::Error;
use crate::filing::{file, keep_ahead_of_scanner, unfile};
use crate::projection::{EventKind, Ignored, Plan, TaskEvent, TaskRecord, decide, task_key};
use crate::store::{MAX_ATTEMPTS, Ttl, backoff};
use crate::{metrics, tracked};

/// The outcome of applying one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Changed(Box<Plan>),
    Ignored(Ignored),
}

/// Applies `event` to the task's projection.
pub async fn apply_event(ctx: &Context, event: &TaskEvent) -> Result<Applied, Error> {
    let key = task_key(event.task.task_id);
    for attempt in 1..=MAX_ATTEMPTS {
        let now = ctx.clock.now();
        let current = ctx.store.read::<TaskRecord>(&key).await?;
        let plan = match decide(current.value.as_ref(), event, now, &ctx.policy) {
            Ok(plan) => plan,
            Err(ignored) => {
                if ignored == Ignored::Duplicate {
                    recheck_filing(ctx, current.value.as_ref()).await?;
                }
                return Ok(Applied::Ignored(ignored));
            }
        };
        let version = plan.record.version;
        if let Some(bucket) = plan.file_in {
            file(ctx, bucket, event.task.task_id, version).await?;
        }
        let ttl = if !plan.record.open {
            Some(Ttl::Expire(ctx.tombstone_ttl))
        } else if plan.revived {
            Some(Ttl::Persist)
        } else {
            None
        };
        match ctx
            .store
            .write(&key, &plan.record, current.etag.as_deref(), ttl)
            .await
        {
            Ok(()) => {}
            Err(error) if error.is_write_conflict() => {
                backoff(attempt).await;
                continue;
            }
            Err(error) => return Err(error.into()),
        }
        if let Some(old) = plan.unfile_from
            && let Err(error) = unfile(ctx, old, event.task.task_id, version).await
        {
            tracing::warn!(%error, bucket = old, task_id = %event.task.task_id,
                "could not take the task out of its old bucket; the scanner will drop it");
        }
        let delta = tracked::delta(current.value.as_ref(), &plan.record);
        if let Err(error) = tracked::add(&ctx.store, event.task.task_id, delta).await {
            tracing::warn!(%error, "could not update the tracked-task count");
        }
        let moved = match plan.file_in {
            Some(bucket) => keep_ahead_of_scanner(ctx, event.task.task_id, version, bucket).await?,
            None => false,
        };
        let edge = ctx.policy.buckets.start_of(ctx.policy.horizon(now));
        if moved || plan.file_in.is_some_and(|bucket| bucket <= edge) {
            // Inside the window already: remind at once rather than at the next tick.
            ctx.scan_now.notify_one();
        }
        return Ok(Applied::Changed(Box::new(plan)));
    }
    Err(Error::Contended {
        key,
        attempts: MAX_ATTEMPTS,
    })
}

/// The delivery of a version already applied may be the retry of one whose last step failed:
/// check the stored filing again.
async fn recheck_filing(ctx: &Context, current: Option<&TaskRecord>) -> Result<(), Error> {
    // A reminded due date needs no entry any more.
    if let Some(record) = current.filter(|r| r.open && r.reminded_for != r.due_date)
        && let Some(bucket) = record.filed_in
        && keep_ahead_of_scanner(ctx, record.task_id, record.version, bucket).await?
    {
        ctx.scan_now.notify_one();
    }
    Ok(())
}

async fn handle(ctx: AppState, topic: &'static str, event: TaskEvent) -> Outcome {
    let task_id = event.task.task_id;
    let version = event.task.version;
    match apply_event(&ctx, &event).await {
        Ok(Applied::Changed(plan)) => {
            metrics::event(topic, "applied");
            tracing::debug!(%task_id, version, open = plan.record.open,
                due_date = ?plan.record.due_date, filed_in = ?plan.record.filed_in, "task event applied");
            Outcome::Success
        }
        Ok(Applied::Ignored(reason)) => {
            let result = match reason {
                Ignored::Stale { .. } => "stale",
                Ignored::Duplicate => "duplicate",
            };
            metrics::event(topic, result);
            tracing::debug!(%task_id, version, ?reason, "task event ignored");
            Outcome::Success
        }
        Err(error) => {
            metrics::event(topic, "failed");
            let outcome = error.outcome();
            tracing::warn!(%task_id, version, %error, status = outcome.status(), "task event not applied");
            outcome
        }
    }
}

/// The subscription table: the four task topics, dead-lettered to this app's topic, which it
/// consumes too for a second chance (filing and unfiling are idempotent by task version).
pub fn subscriptions(pubsub: &str, app_id: &str) -> Subscriptions<AppState> {
    Subscriptions::new(pubsub)
        .dead_letter_topic(events::dead_letter_topic(app_id))
        .on::<TaskCreated, _, _>(|ctx: AppState, e: Event<TaskCreated>| {
            deliver(ctx, e, EventKind::Created, |d| &d.task)
        })
        .on::<TaskUpdated, _, _>(|ctx: AppState, e: Event<TaskUpdated>| {
            deliver(ctx, e, EventKind::Updated, |d| &d.task)
        })
        .on::<TaskCompleted, _, _>(|ctx: AppState, e: Event<TaskCompleted>| {
            deliver(ctx, e, EventKind::Completed, |d| &d.task)
        })
        .on::<TaskDeleted, _, _>(|ctx: AppState, e: Event<TaskDeleted>| {
            deliver(ctx, e, EventKind::Deleted, |d| &d.task)
        })
        .second_chance()
}

/// One delivery on `T`'s topic: screened for its publisher, then applied.
async fn deliver<T: EventPayload>(
    ctx: AppState,
    e: Event<T>,
    kind: EventKind,
    task: fn(&T) -> &TaskSnapshot,
) -> Outcome {
    let topic = T::TOPIC;
    let source = e.cloud_event.source.as_str();
    if !topic.accepts_publisher(source) {
        // A forged task event could file a reminder, and so an email, for any address. The
        // sidecar stamps `source` with the publisher's app id (daprd `pkg/runtime/pubsub/
        // cloudevents.go NewCloudEvent`) and dead-letters the message as it came
        // (`pkg/runtime/subscription/subscription.go sendToDeadLetter`), so the second chance
        // sees the original publisher; the component's `publishingScopes` are what stop another
        // app publishing the topic at all. SUCCESS, not DROP: the audit-logger, which consumes
        // the same topic, already records the forgery, and a dead letter would only bring it
        // back here.
        metrics::dropped(topic.as_str(), "forbidden_publisher");
        tracing::warn!(%topic, %source, ce_id = %e.cloud_event.id,
            allowed = %topic.publishers().join(", "),
            "ignoring a task event from an app not allowed to publish it");
        return Outcome::Success;
    }
    let event =
        TaskEvent::from_envelope(kind, &e.envelope, task(&e.envelope.data)).traced(e.traceparent());
    handle(ctx, topic.as_str(), event).await
}
