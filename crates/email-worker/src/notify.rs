//! The events the worker announces about its emails: `notification-sent` and
//! `notification-failed`.
//!
//! Their `event_id` is derived from the trigger (UUID v5 of the trigger's id and the kind), so an
//! announcement repeated after a crash or a redelivery is the *same* event, which consumers
//! deduplicate like any other. Their timestamp is the send (or failure) time, not "now", for the
//! same reason.

use chrono::{DateTime, Utc};
use events::{Channel, Envelope, NotificationFailed, NotificationSent};
use uuid::Uuid;

use crate::compose::Notification;

/// The UUID v5 namespace of the worker's announcements (a fixed random UUID).
const NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_9a4e_1d2b_4c7e_9a61_3e8d_2b47_c0f1);

/// The announcement id for `trigger` and `kind` (`notification-sent` or `notification-failed`).
pub fn announcement_id(trigger: Uuid, kind: events::Topic) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{trigger}:{kind}").as_bytes())
}

/// `notification-sent` for `n`.
pub fn sent(
    app_id: &str,
    n: &Notification,
    subject: &str,
    sent_at: DateTime<Utc>,
) -> Envelope<NotificationSent> {
    let id = announcement_id(n.trigger_event_id, events::Topic::NotificationSent);
    Envelope::with_id(
        id,
        sent_at,
        app_id,
        n.correlation_id.clone(),
        NotificationSent {
            trigger_event_id: n.trigger_event_id,
            trigger_event_type: n.kind.as_str().to_owned(),
            task_id: n.task_id,
            user_id: n.user_id,
            channel: Channel::Email,
            recipient: n.recipient.clone(),
            subject: subject.to_owned(),
            sent_at,
        },
    )
    .caused_by(n.trigger_event_id)
}

/// `notification-failed` for `n`. `reason` must not contain secrets (SMTP replies and address
/// errors do not).
pub fn failed(
    app_id: &str,
    n: &Notification,
    reason: &str,
    failed_at: DateTime<Utc>,
) -> Envelope<NotificationFailed> {
    let id = announcement_id(n.trigger_event_id, events::Topic::NotificationFailed);
    Envelope::with_id(
        id,
        failed_at,
        app_id,
        n.correlation_id.clone(),
        NotificationFailed {
            trigger_event_id: n.trigger_event_id,
            trigger_event_type: n.kind.as_str().to_owned(),
            task_id: n.task_id,
            user_id: n.user_id,
            channel: Channel::Email,
            recipient: n.recipient.clone(),
            reason: reason.to_owned(),
            failed_at,
        },
    )
    .caused_by(n.trigger_event_id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use events::Topic;

    #[test]
    fn ids_are_deterministic_and_distinct_per_kind_and_trigger() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        assert_eq!(
            announcement_id(a, Topic::NotificationSent),
            announcement_id(a, Topic::NotificationSent)
        );
        assert_ne!(
            announcement_id(a, Topic::NotificationSent),
            announcement_id(a, Topic::NotificationFailed)
        );
        assert_ne!(
            announcement_id(a, Topic::NotificationSent),
            announcement_id(b, Topic::NotificationSent)
        );
        assert_eq!(
            announcement_id(a, Topic::NotificationSent).get_version_num(),
            5
        );
    }
}
