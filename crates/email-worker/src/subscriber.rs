//! The subscription table: `task-created` and `task-due-soon` on the pub/sub component, in the
//! worker's own consumer group, dead-lettering to `email-worker-dead-letters`, which the worker
//! also consumes with the same handlers: a second chance for an event dead-lettered only because
//! the worker was down or slow (sends are claimed by event id, so a second delivery of a sent
//! email sends nothing).
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

use axum::Router;
use chrono::Utc;
use dapr_http::{Outcome, RawEvent, Subscriptions};
use events::{EventPayload, TaskCreated, TaskDueSoon};
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use crate::compose::{EmailContext, Notification};
use crate::templates::EmailKind;
use crate::worker::Worker;
use crate::{counters, staleness};

/// `GET /dapr/subscribe` and the delivery routes.
pub fn routes(worker: Arc<Worker>, app_api_token: Option<secrecy::SecretString>) -> Router {
    let subscriptions = Subscriptions::new(worker.pubsub.clone())
        .dead_letter_topic(events::dead_letter_topic(&worker.app_id))
        .app_api_token(app_api_token)
        .on_raw(
            TaskCreated::TOPIC,
            |w: Arc<Worker>, e: RawEvent| async move {
                handle::<TaskCreated>(&w, e, EmailKind::TaskCreated, Notification::task_created)
                    .await
            },
        )
        .on_raw(
            TaskDueSoon::TOPIC,
            |w: Arc<Worker>, e: RawEvent| async move {
                handle::<TaskDueSoon>(&w, e, EmailKind::TaskDueSoon, Notification::task_due_soon)
                    .await
            },
        )
        .second_chance();
    subscriptions.router(worker)
}

async fn handle<T: EventPayload>(
    worker: &Worker,
    event: RawEvent,
    kind: EmailKind,
    notification: fn(&events::Envelope<T>) -> Notification,
) -> Outcome {
    let source = event.cloud_event.source.as_str();
    if !T::TOPIC.accepts_publisher(source) {
        let reason = format!(
            "`{}` published by `{source}`, which may not publish it (allowed: {})",
            T::TOPIC,
            T::TOPIC.publishers().join(", ")
        );
        tracing::warn!(ce_id = %event.cloud_event.id, %reason, "dropping a trigger from an app not allowed to publish it; no email");
        counters::failed(kind, "forbidden_publisher");
        return Outcome::Drop(reason);
    }
    let traceparent = event.traceparent().map(str::to_owned);
    match events::decode::<T>(&event.body) {
        Ok(delivery) => {
            let envelope = &delivery.envelope;
            if let Some(age) =
                staleness::too_old(envelope.timestamp, Utc::now(), worker.max_event_age)
            {
                return staleness::skip(kind, envelope.event_id, envelope.timestamp, age);
            }
            let span = tracing::info_span!(
                "email",
                event_id = %delivery.envelope.event_id,
                event_type = kind.as_str(),
                correlation_id = %delivery.envelope.correlation_id,
            );
            worker
                .process(notification(&delivery.envelope), traceparent.as_deref())
                .instrument(span)
                .await
        }
        Err(error) => {
            let reason = format!("undecodable `{}` event: {error}", kind.as_str());
            match identity(&event.data, kind) {
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
            }
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
