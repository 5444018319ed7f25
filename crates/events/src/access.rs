//! Who may publish and who may subscribe to each topic: the source of the pub/sub component's
//! `publishingScopes` and `subscriptionScopes`, and of the consumers' publisher checks.
//!
//! Everything here is derived from [`Topic::producer`], [`Topic::consumers`] and the dead-letter
//! topics, so a topic or subscription added there changes the scopes the manifests must carry
//! (the deploy drift test compares them).
//!
//! Two kinds of publisher besides a topic's producer exist:
//! * a subscriber's sidecar publishes what its app drops to the app's dead-letter topic, so every
//!   subscriber may publish to its own dead-letter topic;
//! * the audit-logger replays dead letters to their original topic (see its
//!   `dead_letter_admin::replay`), so it may publish to every topic that has a consumer (only
//!   those can be dead-lettered). A consumer therefore accepts the [`REPLAYER`] as well as the
//!   producer.

use std::collections::BTreeSet;

use crate::topics::{Topic, apps, dead_letter_consumers, dead_letter_topic};

/// The app that republishes dead letters to their original topic.
pub const REPLAYER: &str = apps::AUDIT_LOGGER;

impl Topic {
    /// The apps whose sidecar may publish this topic: its producer and, for a topic that can be
    /// dead-lettered, the replayer.
    pub fn publishers(self) -> Vec<&'static str> {
        let mut publishers = vec![self.producer()];
        if !self.consumers().is_empty() && self.producer() != REPLAYER {
            publishers.push(REPLAYER);
        }
        publishers
    }

    /// Whether a delivery whose CloudEvent names `source` as its publisher may be acted on.
    pub fn accepts_publisher(self, source: &str) -> bool {
        self.publishers().contains(&source)
    }
}

/// The topics `app` subscribes to: the topics it consumes, plus the dead-letter topics it
/// consumes (its own, for a second chance, and every one for the audit-logger, which records
/// them; see [`dead_letter_consumers`]).
pub fn subscribed_topics(app: &str) -> BTreeSet<String> {
    let mut topics: BTreeSet<String> = Topic::ALL
        .into_iter()
        .filter(|t| t.consumers().contains(&app))
        .map(|t| t.as_str().to_owned())
        .collect();
    topics.extend(
        apps::SUBSCRIBERS
            .into_iter()
            .filter(|owner| dead_letter_consumers(owner).contains(&app))
            .map(dead_letter_topic),
    );
    topics
}

/// The topics `app`'s sidecar publishes to: what it produces, what it replays, and its own
/// dead-letter topic when it subscribes to anything.
pub fn published_topics(app: &str) -> BTreeSet<String> {
    let mut topics: BTreeSet<String> = Topic::ALL
        .into_iter()
        .filter(|t| t.publishers().contains(&app))
        .map(|t| t.as_str().to_owned())
        .collect();
    if !subscribed_topics(app).is_empty() {
        topics.insert(dead_letter_topic(app));
    }
    topics
}

/// `publishingScopes` of the pub/sub component, in daprd's `app=t1,t2;app2=t3` form, every app
/// listed (an app with no topics gets `app=`, which denies it every topic).
pub fn publishing_scopes() -> String {
    scope_string(published_topics)
}

/// `subscriptionScopes` of the pub/sub component, in the same form.
pub fn subscription_scopes() -> String {
    scope_string(subscribed_topics)
}

fn scope_string(topics_of: fn(&str) -> BTreeSet<String>) -> String {
    apps::ALL
        .iter()
        .map(|app| {
            let topics: Vec<String> = topics_of(app).into_iter().collect();
            format!("{app}={}", topics.join(","))
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_producer_and_the_replayer_publish_a_topic() {
        assert_eq!(
            Topic::TaskCreated.publishers(),
            [apps::TASK_API, apps::AUDIT_LOGGER]
        );
        assert!(Topic::TaskCreated.accepts_publisher("task-api"));
        assert!(!Topic::TaskCreated.accepts_publisher("reminder-scheduler"));
        assert!(!Topic::TaskCreated.accepts_publisher("Dapr"));
        assert!(Topic::TaskDueSoon.accepts_publisher("reminder-scheduler"));
        assert!(!Topic::TaskDueSoon.accepts_publisher("task-api"));
    }

    #[test]
    fn every_subscriber_publishes_its_own_dead_letters_and_nothing_it_does_not_own() {
        assert_eq!(
            published_topics(apps::REMINDER_SCHEDULER),
            BTreeSet::from([
                "reminder-scheduler-dead-letters".to_owned(),
                "task-due-soon".to_owned()
            ])
        );
        assert!(published_topics(apps::TASK_API).contains("task-created"));
        assert!(!published_topics(apps::TASK_API).contains("task-api-dead-letters"));
        assert!(subscribed_topics(apps::TASK_API).is_empty());
        for app in apps::SUBSCRIBERS {
            assert!(published_topics(app).contains(&dead_letter_topic(app)));
        }
    }

    #[test]
    fn every_subscriber_may_subscribe_to_its_own_dead_letters_for_a_second_chance() {
        for app in apps::SUBSCRIBERS {
            assert!(
                subscribed_topics(app).contains(&dead_letter_topic(app)),
                "{app}"
            );
        }
        assert!(!subscribed_topics(apps::EMAIL_WORKER).contains("reminder-scheduler-dead-letters"));
        assert_eq!(
            subscribed_topics(apps::AUDIT_LOGGER)
                .iter()
                .filter(|t| t.ends_with("-dead-letters"))
                .count(),
            apps::SUBSCRIBERS.len()
        );
    }

    #[test]
    fn scope_strings_list_every_app() {
        let subs = subscription_scopes();
        assert!(subs.starts_with(
            "task-api=;email-worker=email-worker-dead-letters,task-created,task-due-soon;"
        ));
        assert!(
            publishing_scopes()
                .starts_with("task-api=task-completed,task-created,task-deleted,task-updated;")
        );
        assert_eq!(subs.split(';').count(), apps::ALL.len());
    }
}
