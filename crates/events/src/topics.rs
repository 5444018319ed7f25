//! The one list of topics and app ids that code, manifests and docs take from.
//!
//! A topic name is part of the wire contract between independently deployed services: renaming
//! one here is a breaking change that the deploy drift test and the AsyncAPI test will flag.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The name of the pub/sub component every service publishes to and subscribes on.
pub const PUBSUB_NAME: &str = "todo-pubsub";
/// The name of the state store component; each service sees only its own keys (app-id prefix).
pub const STATE_STORE_NAME: &str = "todo-state";

/// App ids of the services. They are also consumer-group names, state key prefixes and the
/// CloudEvent `source` of what each service publishes.
pub mod apps {
    pub const TASK_API: &str = "task-api";
    pub const EMAIL_WORKER: &str = "email-worker";
    pub const REMINDER_SCHEDULER: &str = "reminder-scheduler";
    pub const AUDIT_LOGGER: &str = "audit-logger";
    /// Every service, in a stable order.
    pub const ALL: [&str; 4] = [TASK_API, EMAIL_WORKER, REMINDER_SCHEDULER, AUDIT_LOGGER];
    /// Services that subscribe to topics, and therefore own a dead-letter topic.
    pub const SUBSCRIBERS: [&str; 3] = [EMAIL_WORKER, REMINDER_SCHEDULER, AUDIT_LOGGER];
}

/// Every business topic of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topic {
    TaskCreated,
    TaskUpdated,
    TaskCompleted,
    TaskDeleted,
    TaskDueSoon,
    NotificationSent,
    NotificationFailed,
}

impl Topic {
    /// All topics, in a stable order.
    pub const ALL: [Topic; 7] = [
        Topic::TaskCreated,
        Topic::TaskUpdated,
        Topic::TaskCompleted,
        Topic::TaskDeleted,
        Topic::TaskDueSoon,
        Topic::NotificationSent,
        Topic::NotificationFailed,
    ];

    /// The topic name on the broker; also the envelope's `event_type` and the CloudEvent `type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Topic::TaskCreated => "task-created",
            Topic::TaskUpdated => "task-updated",
            Topic::TaskCompleted => "task-completed",
            Topic::TaskDeleted => "task-deleted",
            Topic::TaskDueSoon => "task-due-soon",
            Topic::NotificationSent => "notification-sent",
            Topic::NotificationFailed => "notification-failed",
        }
    }

    /// The app that publishes this topic.
    pub const fn producer(self) -> &'static str {
        match self {
            Topic::TaskCreated | Topic::TaskUpdated | Topic::TaskCompleted | Topic::TaskDeleted => {
                apps::TASK_API
            }
            Topic::TaskDueSoon => apps::REMINDER_SCHEDULER,
            Topic::NotificationSent | Topic::NotificationFailed => apps::EMAIL_WORKER,
        }
    }

    /// The apps that consume this topic, each in its own consumer group (its app id).
    pub const fn consumers(self) -> &'static [&'static str] {
        match self {
            Topic::TaskCreated => &[
                apps::EMAIL_WORKER,
                apps::REMINDER_SCHEDULER,
                apps::AUDIT_LOGGER,
            ],
            Topic::TaskUpdated | Topic::TaskCompleted | Topic::TaskDeleted => {
                &[apps::REMINDER_SCHEDULER, apps::AUDIT_LOGGER]
            }
            Topic::TaskDueSoon => &[apps::EMAIL_WORKER, apps::AUDIT_LOGGER],
            Topic::NotificationSent | Topic::NotificationFailed => &[apps::AUDIT_LOGGER],
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not one of [`Topic::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown topic `{0}`")]
pub struct UnknownTopic(pub String);

impl FromStr for Topic {
    type Err = UnknownTopic;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTopic(s.to_owned()))
    }
}

/// The dead-letter topic of a subscribing app: where its sidecar sends events the app answered
/// `DROP` to. One per app (not per topic) so a dead letter says who gave up on it; the original
/// topic stays inside the CloudEvent (`topic`), which is what a replay publishes back to.
pub fn dead_letter_topic(app_id: &str) -> String {
    format!("{app_id}-dead-letters")
}

/// Every dead-letter topic the system uses, for `allowedTopics` and the audit-logger.
pub fn dead_letter_topics() -> Vec<String> {
    apps::SUBSCRIBERS
        .iter()
        .map(|app| dead_letter_topic(app))
        .collect()
}

/// The apps that consume the dead-letter topic of `app`, each in its own consumer group: `app`
/// itself (a second chance for what failed only because it was down or slow: without a
/// resiliency policy daprd dead-letters at the first failed delivery) and the audit-logger,
/// which records every dead letter (for its own topic, both roles are one subscription).
pub fn dead_letter_consumers(app: &str) -> Vec<&str> {
    let mut consumers = vec![app];
    if app != apps::AUDIT_LOGGER {
        consumers.push(apps::AUDIT_LOGGER);
    }
    consumers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Topic::ALL {
            assert_eq!(t.as_str().parse::<Topic>(), Ok(t));
            assert_eq!(
                serde_json::to_value(t).ok(),
                Some(serde_json::json!(t.as_str()))
            );
        }
        assert!("task-exploded".parse::<Topic>().is_err());
    }

    #[test]
    fn every_consumer_subscribes_and_has_a_dead_letter_topic() {
        for t in Topic::ALL {
            for c in t.consumers() {
                assert!(apps::SUBSCRIBERS.contains(c), "{c} consumes {t}");
            }
            assert!(!t.consumers().contains(&t.producer()), "{t} loops");
        }
        assert_eq!(
            dead_letter_topics(),
            [
                "email-worker-dead-letters",
                "reminder-scheduler-dead-letters",
                "audit-logger-dead-letters"
            ]
        );
        assert_eq!(
            dead_letter_consumers(apps::EMAIL_WORKER),
            [apps::EMAIL_WORKER, apps::AUDIT_LOGGER]
        );
        assert_eq!(
            dead_letter_consumers(apps::AUDIT_LOGGER),
            [apps::AUDIT_LOGGER]
        );
    }
}
