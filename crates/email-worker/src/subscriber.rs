//! The subscription table: `task-created` and `task-due-soon` on the pub/sub component, in the
//! worker's own consumer group, dead-lettering to `email-worker-dead-letters`, which the worker
//! also consumes with the same handlers: a second chance for an event dead-lettered only because
//! the worker was down or slow (sends are claimed by event id, so a second delivery of a sent
//! email sends nothing).
//!
//! Both trigger topics are bulk subscriptions (Dapr's `bulkSubscribe`): a batch's triggers are
//! claimed together (see [`crate::batch`]), and each gets its own status. The dead-letter topic
//! comes one event at a time, through the same handlers as a batch of one.
//!
//! Deliveries are taken raw and decoded here (not by the typed router) so that an undecodable
//! event is still counted and, when its ids can be read, announced as `notification-failed`
//! before it is dropped.
//!
//! A trigger whose CloudEvent `source` is not an app allowed to publish its topic
//! ([`events::Topic::publishers`]: the producer, or the audit-logger replaying a dead letter) is
//! dropped without an email or an announcement: its recipient and text cannot be trusted. The
//! `source` is what the publisher's sidecar stamps with its app id; the pub/sub component's
//! `publishingScopes` are what stop another app's sidecar from publishing the topic at all (see
//! the README's threat model for what each guarantees).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use chrono::Utc;
use dapr_http::{BulkSubscribe, Outcome, RawEvent, Subscriptions};
use events::{EventPayload, TaskCreated, TaskDueSoon};
use serde_json::Value;
use uuid::Uuid;

use crate::batch::Trigger;
use crate::compose::{EmailContext, Notification};
use crate::templates::EmailKind;
use crate::worker::Worker;
use crate::{counters, staleness};

/// Events per bulk delivery: claimed in transactions of as many as there are send permits free.
pub const BATCH_MAX_EVENTS: usize = 100;
/// How long the first event of a batch waits for more: 1 ms, the timer's resolution. Under load
/// the wait buys nothing: a backlog comes out of the broker as fast as it can be read (in this
/// project's sidecar up to two batches' worth of messages wait for the batcher, see
/// `sidecar-core`'s `delivery`), so batches fill at once. It matters only when triggers come
/// slowly, and then every email pays it in full: at 350 creates/s a 5 ms wait made batches of
/// about two and added 5 ms to each email (request to email p50 13-14 ms against 8 ms with 1 ms),
/// and at full load the email-worker and the sidecar used the same CPU with either.
pub const BATCH_MAX_WAIT: Duration = Duration::from_millis(1);

/// `GET /dapr/subscribe` and the delivery routes.
pub fn routes(worker: Arc<Worker>, app_api_token: Option<secrecy::SecretString>) -> Router {
    let bulk = BulkSubscribe::new(BATCH_MAX_EVENTS, BATCH_MAX_WAIT);
    subscriptions(&worker.pubsub, &worker.app_id, bulk)
        .app_api_token(app_api_token)
        .router(worker)
}

/// The subscription table, without the app API token.
fn subscriptions(pubsub: &str, app_id: &str, bulk: BulkSubscribe) -> Subscriptions<Arc<Worker>> {
    Subscriptions::new(pubsub.to_owned())
        .dead_letter_topic(events::dead_letter_topic(app_id))
        .on_raw_batch(
            TaskCreated::TOPIC,
            bulk,
            |w: Arc<Worker>, batch: Vec<RawEvent>| async move {
                handle_batch::<TaskCreated>(
                    &w,
                    batch,
                    EmailKind::TaskCreated,
                    Notification::task_created,
                )
                .await
            },
        )
        .on_raw_batch(
            TaskDueSoon::TOPIC,
            bulk,
            |w: Arc<Worker>, batch: Vec<RawEvent>| async move {
                handle_batch::<TaskDueSoon>(
                    &w,
                    batch,
                    EmailKind::TaskDueSoon,
                    Notification::task_due_soon,
                )
                .await
            },
        )
        .second_chance()
}

/// A batch of deliveries on `T`'s topic: the triggers that need an email go to the worker
/// together; the rest are answered one by one. One outcome per delivery, in order.
async fn handle_batch<T: EventPayload>(
    worker: &Arc<Worker>,
    batch: Vec<RawEvent>,
    kind: EmailKind,
    notification: fn(&events::Envelope<T>) -> Notification,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = batch.iter().map(|_| None).collect();
    let mut positions = Vec::with_capacity(batch.len());
    let mut triggers = Vec::with_capacity(batch.len());
    for (position, event) in batch.into_iter().enumerate() {
        match screen::<T>(worker, event, kind, notification).await {
            Screened::Answered(outcome) => outcomes[position] = Some(outcome),
            Screened::Email(trigger) => {
                positions.push(position);
                triggers.push(*trigger);
            }
        }
    }
    if !triggers.is_empty() {
        for (position, outcome) in positions
            .into_iter()
            .zip(worker.process_batch(triggers).await)
        {
            outcomes[position] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Retry("no outcome".into())))
        .collect()
}

/// What the checks before any email make of a delivery.
enum Screened {
    /// Settled without an email (forbidden publisher, too old, undecodable).
    Answered(Outcome),
    /// An email to send.
    Email(Box<Trigger>),
}

async fn screen<T: EventPayload>(
    worker: &Worker,
    event: RawEvent,
    kind: EmailKind,
    notification: fn(&events::Envelope<T>) -> Notification,
) -> Screened {
    let source = event.cloud_event.source.as_str();
    if !T::TOPIC.accepts_publisher(source) {
        let reason = format!(
            "`{}` published by `{source}`, which may not publish it (allowed: {})",
            T::TOPIC,
            T::TOPIC.publishers().join(", ")
        );
        tracing::warn!(ce_id = %event.cloud_event.id, %reason, "dropping a trigger from an app not allowed to publish it; no email");
        counters::failed(kind, "forbidden_publisher");
        return Screened::Answered(Outcome::Drop(reason));
    }
    let traceparent = event.traceparent().map(str::to_owned);
    match events::decode::<T>(&event.body) {
        Ok(delivery) => {
            let envelope = &delivery.envelope;
            if let Some(age) =
                staleness::too_old(envelope.timestamp, Utc::now(), worker.max_event_age)
            {
                return Screened::Answered(staleness::skip(
                    kind,
                    envelope.event_id,
                    envelope.timestamp,
                    age,
                ));
            }
            // A batch comes in one request, so no delivery span is opened for each event by the
            // router: open it here, continuing the trace the event came with, so its email and
            // SMTP send hang off that trace as they do for a single delivery.
            let delivery = dapr_http::spans::traced_from(traceparent.as_deref(), || {
                tracing::info_span!(
                    "delivery",
                    otel.name = format!("deliver {}", T::TOPIC),
                    otel.kind = "consumer",
                    messaging.destination.name = %T::TOPIC,
                    trace_id = tracing::field::Empty,
                    span_id = tracing::field::Empty,
                )
            });
            let span = match delivery.as_ref().and_then(tracing::Span::id) {
                Some(parent) => tracing::info_span!(
                    parent: parent,
                    "email",
                    event_id = %envelope.event_id,
                    event_type = kind.as_str(),
                    correlation_id = %envelope.correlation_id,
                ),
                None => tracing::info_span!(
                    "email",
                    event_id = %envelope.event_id,
                    event_type = kind.as_str(),
                    correlation_id = %envelope.correlation_id,
                ),
            };
            Screened::Email(Box::new(Trigger {
                notification: notification(envelope),
                traceparent,
                span,
            }))
        }
        Err(error) => {
            let reason = format!("undecodable `{}` event: {error}", kind.as_str());
            Screened::Answered(match identity(&event.data, kind) {
                Some(n) => {
                    worker
                        .undecodable(&n, &reason, traceparent.as_deref())
                        .await
                }
                None => {
                    tracing::warn!(ce_id = %event.cloud_event.id, %reason, "dropping an undecodable event");
                    counters::failed(kind, "undecodable");
                    Outcome::Drop(reason)
                }
            })
        }
    }
}

/// The ids of an event that does not decode, when they can still be read: enough to announce
/// `notification-failed` for it.
fn identity(envelope: &Value, kind: EmailKind) -> Option<Notification> {
    let uuid = |pointers: &[&str]| {
        pointers
            .iter()
            .find_map(|p| envelope.pointer(p).and_then(Value::as_str))
            .and_then(|s| s.parse::<Uuid>().ok())
    };
    let text = |pointers: &[&str]| {
        pointers
            .iter()
            .find_map(|p| envelope.pointer(p).and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned()
    };
    let trigger_event_id = uuid(&["/event_id"])?;
    let task_id = uuid(&["/data/task/task_id", "/data/task_id"])?;
    let user_id = uuid(&["/data/task/user_id", "/data/user_id"])?;
    let recipient = text(&["/data/task/user_email", "/data/user_email"]);
    Some(Notification {
        kind,
        trigger_event_id,
        correlation_id: text(&["/correlation_id"]),
        task_id,
        user_id,
        recipient: recipient.clone(),
        context: EmailContext {
            kind: kind.as_str(),
            task_id: task_id.to_string(),
            title: String::new(),
            description: String::new(),
            priority: None,
            due_date: None,
            due_date_iso: None,
            due_in: None,
            recipient,
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_triggers_come_in_batches_and_dead_letters_one_at_a_time() {
        let bulk = BulkSubscribe::new(BATCH_MAX_EVENTS, BATCH_MAX_WAIT);
        let specs = subscriptions("todo-pubsub", "email-worker", bulk).specs();
        assert_eq!(specs.len(), 3, "{specs:?}");
        for topic in [TaskCreated::TOPIC, TaskDueSoon::TOPIC] {
            let spec = specs.iter().find(|s| s.topic == topic.as_str()).unwrap();
            assert_eq!(spec.bulk_subscribe, Some(bulk), "{topic}");
            assert_eq!(
                spec.dead_letter_topic.as_deref(),
                Some("email-worker-dead-letters")
            );
        }
        let second_chance = specs
            .iter()
            .find(|s| s.topic == "email-worker-dead-letters")
            .unwrap();
        assert_eq!(second_chance.bulk_subscribe, None);
    }

    #[test]
    fn identity_is_read_from_a_broken_event_when_possible() {
        let id = Uuid::now_v7();
        let broken = json!({"event_id": id, "correlation_id": "c",
            "data": {"task": {"task_id": id, "user_id": id, "user_email": "a@b.c", "title": 42}}});
        let n = identity(&broken, EmailKind::TaskCreated).unwrap();
        assert_eq!(
            (n.trigger_event_id, n.task_id, n.recipient.as_str()),
            (id, id, "a@b.c")
        );
        assert!(identity(&json!({"event_id": "nope"}), EmailKind::TaskDueSoon).is_none());
    }
}
