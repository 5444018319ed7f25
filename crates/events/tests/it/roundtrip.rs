//! Property tests: any envelope of any payload type survives serialisation, and the delivery
//! decoder, unchanged. Timestamps are generated at microsecond precision because that is what
//! the writer writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Debug;

use chrono::{DateTime, SubsecRound, Utc};
use events::{
    Channel, Envelope, EventPayload, NotificationFailed, NotificationSent, Priority, TaskCompleted,
    TaskCreated, TaskDeleted, TaskDueSoon, TaskSnapshot, TaskStatus, TaskUpdated, decode,
};
use proptest::prelude::*;
use proptest::sample::select;
use uuid::Uuid;

/// Year 0000 to 9999: the range RFC 3339 can write.
const MIN_SECS: i64 = -62_167_219_200;
const MAX_SECS: i64 = 253_402_300_799;

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn micros_time() -> impl Strategy<Value = DateTime<Utc>> {
    (MIN_SECS..=MAX_SECS, 0u32..1_000_000)
        .prop_map(|(secs, micros)| DateTime::from_timestamp(secs, micros * 1_000).unwrap())
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, control characters and quotes included.
    any::<String>()
}

fn snapshot() -> impl Strategy<Value = TaskSnapshot> {
    (
        (uuid(), uuid(), text(), text(), text()),
        (
            select(Priority::ALL.to_vec()),
            proptest::option::of(micros_time()),
            select(TaskStatus::ALL.to_vec()),
            any::<u64>(),
            micros_time(),
            micros_time(),
        ),
    )
        .prop_map(
            |(
                (task_id, user_id, user_email, title, description),
                (priority, due_date, status, version, created_at, updated_at),
            )| TaskSnapshot {
                task_id,
                user_id,
                user_email,
                title,
                description,
                priority,
                due_date,
                status,
                version,
                created_at,
                updated_at,
            },
        )
}

fn envelope<T: EventPayload + Debug>(
    data: impl Strategy<Value = T>,
) -> impl Strategy<Value = Envelope<T>> {
    (
        uuid(),
        micros_time(),
        text(),
        text(),
        proptest::option::of(uuid()),
        data,
    )
        .prop_map(|(id, at, source, correlation, cause, data)| {
            let envelope = Envelope::with_id(id, at, source, correlation, data);
            match cause {
                Some(cause) => envelope.caused_by(cause),
                None => envelope,
            }
        })
}

fn notification_head() -> impl Strategy<Value = (Uuid, String, Uuid, Uuid, String)> {
    (uuid(), text(), uuid(), uuid(), text())
}

/// Serialise and read back; then read back through the delivery decoder, both as a raw payload
/// and inside a CloudEvent.
fn assert_round_trip<T: EventPayload + PartialEq + Debug>(envelope: &Envelope<T>) {
    let bytes = serde_json::to_vec(envelope).unwrap();
    let read: Envelope<T> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(&read, envelope);

    let raw = decode::<T>(&bytes).unwrap();
    assert_eq!(&raw.envelope, envelope);

    let cloud_event = serde_json::json!({
        "specversion": "1.0",
        "id": envelope.event_id,
        "type": T::TOPIC.as_str(),
        "data": envelope,
    });
    let wrapped = decode::<T>(&serde_json::to_vec(&cloud_event).unwrap()).unwrap();
    assert_eq!(&wrapped.envelope, envelope);
}

proptest! {
    #[test]
    fn task_created(e in envelope(snapshot().prop_map(|task| TaskCreated { task }))) {
        assert_round_trip(&e);
    }

    #[test]
    fn task_updated(e in envelope(
        (snapshot(), proptest::collection::vec(text(), 0..4))
            .prop_map(|(task, changed_fields)| TaskUpdated { task, changed_fields })
    )) {
        assert_round_trip(&e);
    }

    #[test]
    fn task_completed(e in envelope(snapshot().prop_map(|task| TaskCompleted { task }))) {
        assert_round_trip(&e);
    }

    #[test]
    fn task_deleted(e in envelope(snapshot().prop_map(|task| TaskDeleted { task }))) {
        assert_round_trip(&e);
    }

    #[test]
    fn task_due_soon(e in envelope(
        (uuid(), uuid(), text(), text(), micros_time(), any::<u64>()).prop_map(
            |(task_id, user_id, user_email, title, due_date, task_version)| TaskDueSoon {
                task_id, user_id, user_email, title, due_date, task_version,
            },
        )
    )) {
        assert_round_trip(&e);
    }

    #[test]
    fn notification_sent(e in envelope(
        (notification_head(), text(), micros_time()).prop_map(
            |((trigger_event_id, trigger_event_type, task_id, user_id, recipient), subject, sent_at)| {
                NotificationSent {
                    trigger_event_id, trigger_event_type, task_id, user_id,
                    channel: Channel::Email, recipient, subject, sent_at,
                }
            },
        )
    )) {
        assert_round_trip(&e);
    }

    #[test]
    fn notification_failed(e in envelope(
        (notification_head(), text(), micros_time()).prop_map(
            |((trigger_event_id, trigger_event_type, task_id, user_id, recipient), reason, failed_at)| {
                NotificationFailed {
                    trigger_event_id, trigger_event_type, task_id, user_id,
                    channel: Channel::Email, recipient, reason, failed_at,
                }
            },
        )
    )) {
        assert_round_trip(&e);
    }

    /// Sub-microsecond digits are cut on write, never rounded up into the next microsecond.
    #[test]
    fn timestamps_are_written_truncated_to_microseconds(
        secs in MIN_SECS..=MAX_SECS,
        nanos in 0u32..1_000_000_000,
    ) {
        let at = DateTime::from_timestamp(secs, nanos).unwrap();
        let mut envelope = Envelope::with_id(Uuid::nil(), at, "p", "c", TaskDueSoon {
            task_id: Uuid::nil(), user_id: Uuid::nil(), user_email: String::new(),
            title: String::new(), due_date: at, task_version: 1,
        });
        let read: Envelope<TaskDueSoon> =
            serde_json::from_slice(&serde_json::to_vec(&envelope).unwrap()).unwrap();
        envelope.timestamp = at.trunc_subsecs(6);
        envelope.data.due_date = at.trunc_subsecs(6);
        prop_assert_eq!(read, envelope);
    }
}
