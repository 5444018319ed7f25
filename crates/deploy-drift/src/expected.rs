//! What the code says the manifests must contain.

use std::collections::{BTreeMap, BTreeSet};

use events::{Topic, apps};

/// A service's identity as its own settings define it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub app_id: String,
    pub app_port: u16,
}

/// The names and numbers the manifests must agree with.
#[derive(Debug, Clone)]
pub struct Expected {
    pub services: Vec<Service>,
    /// Every topic published or subscribed in code, dead-letter topics included.
    pub topics: BTreeSet<String>,
    /// Per subscribing app, the topics it consumes.
    pub subscriptions: BTreeMap<String, BTreeSet<String>>,
    /// Per app (every app), the topics its sidecar may publish: `publishingScopes`.
    pub publishing: BTreeMap<String, BTreeSet<String>>,
    /// Per app (every app), the topics it may subscribe to: `subscriptionScopes`.
    pub subscribing: BTreeMap<String, BTreeSet<String>>,
    pub pubsub_name: String,
    pub state_store_name: String,
}

impl Expected {
    /// Topics, consumers and component names from the `events` crate; app ids and ports from
    /// the services' settings (the caller loads them, so this crate needs no service code).
    pub fn from_code(services: Vec<Service>) -> Self {
        let mut topics: BTreeSet<String> = Topic::ALL.iter().map(|t| t.as_str().into()).collect();
        topics.extend(events::dead_letter_topics());

        let mut subscriptions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for topic in Topic::ALL {
            for app in topic.consumers() {
                subscriptions
                    .entry((*app).into())
                    .or_default()
                    .insert(topic.as_str().into());
            }
        }
        // The audit-logger records every dead letter; every subscriber consumes its own dead
        // letters again (the second chance).
        for app in apps::SUBSCRIBERS {
            for consumer in events::dead_letter_consumers(app) {
                subscriptions
                    .entry(consumer.into())
                    .or_default()
                    .insert(events::dead_letter_topic(app));
            }
        }

        let publishing = apps::ALL
            .iter()
            .map(|app| ((*app).to_owned(), events::access::published_topics(app)))
            .collect();
        let subscribing = apps::ALL
            .iter()
            .map(|app| ((*app).to_owned(), events::access::subscribed_topics(app)))
            .collect();

        Self {
            services,
            publishing,
            subscribing,
            topics,
            subscriptions,
            pubsub_name: events::PUBSUB_NAME.into(),
            state_store_name: events::STATE_STORE_NAME.into(),
        }
    }

    /// The service with this app id.
    pub fn service(&self, app_id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.app_id == app_id)
    }
}
