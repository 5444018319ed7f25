//! Old triggers are acknowledged without an email.
//!
//! A first deployment creates the worker's consumer group, and a new group reads whatever the
//! topics still hold: with `initialOffset: oldest` a new Kafka group starts at the oldest retained
//! offset (seven days of `task-created` here; Dapr docs, "Apache Kafka" pub/sub component,
//! `initialOffset`), and a new Redis Streams group is created at the start of the stream
//! (components-contrib `pubsub/redis/redis.go`, `Subscribe`: `XGroupCreateMkStream(…, "0")`).
//! Nobody wants last week's "new task" or yesterday's "due soon" email, so a
//! trigger whose envelope timestamp is older than `MAX_EVENT_AGE` is answered SUCCESS without
//! an email, logged, and counted in `emails_skipped_total{reason="too_old"}`; audit-logger still
//! records the trigger itself.
//!
//! The age runs from the envelope timestamp (when the producer created the event), not from the
//! delivery, so a redelivery does not make an event young again. The same rule therefore applies
//! to a backlog that built up while the worker or the mail relay was down for longer than
//! `MAX_EVENT_AGE`: those emails are skipped too, visibly in the counter. An event stamped in
//! the future (a producer's clock ahead of ours) is treated as new.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dapr_http::Outcome;
use uuid::Uuid;

use crate::counters;
use crate::templates::EmailKind;

/// The age of an event created at `created` when it is older than `max_age` at `now`.
pub fn too_old(
    created: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Option<chrono::Duration> {
    let age = now.signed_duration_since(created);
    let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    (age > max_age).then_some(age)
}

/// Acknowledges an old trigger without sending its email.
pub fn skip(
    kind: EmailKind,
    event_id: Uuid,
    created: DateTime<Utc>,
    age: chrono::Duration,
) -> Outcome {
    tracing::info!(%event_id, event_type = kind.as_str(), %created, age_hours = age.num_hours(),
        "event older than MAX_EVENT_AGE; acknowledged without an email");
    counters::skipped(kind, "too_old");
    Outcome::Success
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn only_events_older_than_the_limit_are_too_old() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .unwrap()
            .to_utc();
        let hour = Duration::from_secs(3600);
        assert_eq!(
            too_old(now - chrono::Duration::minutes(59), now, hour),
            None
        );
        assert_eq!(too_old(now - chrono::Duration::hours(1), now, hour), None);
        assert_eq!(
            too_old(now - chrono::Duration::days(7), now, hour),
            Some(chrono::Duration::days(7))
        );
        assert_eq!(too_old(now + chrono::Duration::hours(2), now, hour), None);
        assert_eq!(too_old(DateTime::<Utc>::MIN_UTC, now, Duration::MAX), None);
    }
}
