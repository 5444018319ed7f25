//! Per-entry dead-letter overrides in the subscription table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dapr_http::{Outcome, RawEvent, Subscriptions};

async fn ok(_: (), _: RawEvent) -> Outcome {
    Outcome::Success
}

#[test]
fn an_entry_can_opt_out_of_the_tables_dead_letter_topic() {
    let subs = Subscriptions::<()>::new("todo-pubsub")
        .dead_letter_topic("audit-logger-dead-letters")
        .on_raw("task-created", ok)
        .on_raw("email-worker-dead-letters", ok)
        .on_raw("audit-logger-dead-letters", ok)
        .dead_letter_topic_for("email-worker-dead-letters", None)
        .dead_letter_topic_for("audit-logger-dead-letters", None)
        .dead_letter_topic_for("task-created", Some("elsewhere".into()));
    let specs = subs.specs();
    let dlq = |topic: &str| {
        specs
            .iter()
            .find(|s| s.topic == topic)
            .unwrap()
            .dead_letter_topic
            .clone()
    };
    assert_eq!(dlq("task-created").as_deref(), Some("elsewhere"));
    assert_eq!(dlq("email-worker-dead-letters"), None);
    assert_eq!(dlq("audit-logger-dead-letters"), None);
    let json = serde_json::to_value(&specs).unwrap();
    assert!(json[1].get("deadLetterTopic").is_none(), "{json}");
    assert_eq!(json[0]["deadLetterTopic"], "elsewhere");
}

#[test]
fn entries_without_an_override_keep_the_tables_dead_letter_topic() {
    let specs = Subscriptions::<()>::new("todo-pubsub")
        .on_raw("task-created", ok)
        .dead_letter_topic("audit-logger-dead-letters")
        .on_raw("task-updated", ok)
        .dead_letter_topic_for("no-such-topic", None)
        .specs();
    assert!(
        specs
            .iter()
            .all(|s| s.dead_letter_topic.as_deref() == Some("audit-logger-dead-letters"))
    );
}
