//! The worker's Prometheus counters, all labelled by the trigger's `event_type` (its topic), so a
//! dashboard can tell creation emails from reminders.

use metrics::counter;

use crate::templates::EmailKind;

/// An email was accepted by the mail server (or written to the mail folder).
pub fn sent(kind: EmailKind) {
    counter!("emails_sent_total", "event_type" => kind.as_str()).increment(1);
}

/// An email failed for good; the trigger was dead-lettered.
pub fn failed(kind: EmailKind, reason: &'static str) {
    counter!("emails_failed_total", "event_type" => kind.as_str(), "reason" => reason).increment(1);
}

/// A redelivery of an event whose email was already sent: nothing was sent.
pub fn duplicate(kind: EmailKind) {
    counter!("emails_duplicate_total", "event_type" => kind.as_str()).increment(1);
}

/// A trigger acknowledged on purpose without an email (e.g. older than `MAX_EVENT_AGE`).
pub fn skipped(kind: EmailKind, reason: &'static str) {
    counter!("emails_skipped_total", "event_type" => kind.as_str(), "reason" => reason)
        .increment(1);
}

/// A transient failure: the sidecar will redeliver the event.
pub fn retried(kind: EmailKind, reason: &'static str) {
    counter!("emails_retried_total", "event_type" => kind.as_str(), "reason" => reason)
        .increment(1);
}

/// Registers every series at zero, so they show on `/metrics` before the first event.
pub fn describe() {
    for kind in EmailKind::ALL {
        counter!("emails_sent_total", "event_type" => kind.as_str()).increment(0);
        counter!("emails_duplicate_total", "event_type" => kind.as_str()).increment(0);
    }
    metrics::describe_counter!("emails_sent_total", "Emails accepted by the mail transport");
    metrics::describe_counter!(
        "emails_failed_total",
        "Emails that failed permanently (trigger dead-lettered)"
    );
    metrics::describe_counter!(
        "emails_duplicate_total",
        "Redelivered triggers whose email was already sent"
    );
    metrics::describe_counter!(
        "emails_skipped_total",
        "Triggers acknowledged without an email (reason too_old: older than MAX_EVENT_AGE)"
    );
    metrics::describe_counter!(
        "emails_retried_total",
        "Triggers answered RETRY after a transient failure"
    );
}
