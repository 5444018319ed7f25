//! The subscription table: every business topic, and every dead-letter topic of the system.

use std::sync::Arc;

use std::time::Duration;

use dapr_http::{BulkSubscribe, RawEvent, Subscriptions};

use crate::context::AppState;
use crate::{dead_letters, record};

/// The dead-letter topics consumed: the system's, plus this app's own when `APP_ID` differs.
pub fn dead_letter_topics(app_id: &str) -> Vec<String> {
    let mut topics = events::dead_letter_topics();
    let own = events::dead_letter_topic(app_id);
    if !topics.contains(&own) {
        topics.push(own);
    }
    topics
}

/// Events per batch on a business topic: one batch append per trail records them all.
pub const BATCH_MAX_EVENTS: usize = 100;
/// How long the first event of a batch waits for more; short, so the trails stay current.
pub const BATCH_MAX_WAIT: Duration = Duration::from_millis(20);

/// Business topics are consumed in batches ([`record::on_batch`]) and dead-letter to this app's
/// dead-letter topic; dead-letter topics have none,
/// since a DROP there would otherwise be dead-lettered into a topic this app consumes, forever.
pub fn subscriptions(pubsub: &str, app_id: &str) -> Subscriptions<AppState> {
    let mut subs = Subscriptions::new(pubsub).dead_letter_topic(events::dead_letter_topic(app_id));
    for topic in events::Topic::ALL {
        let name = topic.as_str();
        let bulk = BulkSubscribe::new(BATCH_MAX_EVENTS, BATCH_MAX_WAIT);
        subs = subs.on_raw_batch(
            name,
            bulk,
            move |ctx: AppState, events: Vec<RawEvent>| async move {
                record::on_batch(&ctx, name, events).await
            },
        );
    }
    for dlq in dead_letter_topics(app_id) {
        let name: Arc<str> = Arc::from(dlq.as_str());
        subs = subs
            .on_raw(&dlq, move |ctx: AppState, event: RawEvent| {
                let name = Arc::clone(&name);
                async move { dead_letters::on_dead_letter(&ctx, &name, event).await }
            })
            .dead_letter_topic_for(&dlq, None);
    }
    subs
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_and_dead_letter_topic_with_the_right_dead_letter_setting() {
        let specs = subscriptions("todo-pubsub", "audit-logger").specs();
        assert_eq!(specs.len(), events::Topic::ALL.len() + 3);
        for topic in events::Topic::ALL {
            let spec = specs.iter().find(|s| s.topic == topic.as_str()).unwrap();
            assert_eq!(
                spec.dead_letter_topic.as_deref(),
                Some("audit-logger-dead-letters")
            );
            assert_eq!(spec.route, format!("/events/{topic}"));
            assert!(
                spec.bulk_subscribe.is_some_and(|b| b.enabled),
                "{topic} is consumed in batches"
            );
        }
        for dlq in events::dead_letter_topics() {
            let spec = specs.iter().find(|s| s.topic == dlq).unwrap();
            assert_eq!(spec.dead_letter_topic, None, "{dlq} must not dead-letter");
        }
    }

    #[test]
    fn a_renamed_app_still_consumes_its_own_dead_letters() {
        let topics = dead_letter_topics("audit-logger-2");
        assert!(topics.contains(&"audit-logger-2-dead-letters".to_owned()));
        assert_eq!(topics.len(), 4);
    }
}
