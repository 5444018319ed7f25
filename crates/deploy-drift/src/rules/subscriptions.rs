//! Declarative subscriptions (`deploy/dapr/subscriptions-declarative/`) against the consumer
//! table in `events`.

use std::collections::{BTreeMap, BTreeSet};

use crate::expected::Expected;
use crate::manifests::Manifests;
use crate::violation::{Rule, Violation};
use crate::yaml::{kind, scopes, text_at};

/// The folder of declarative subscriptions.
pub const FOLDER: &str = "deploy/dapr/subscriptions-declarative/";

/// Pub/sub name, dead-letter topic, route, and per app the set of topics.
pub fn declarative(manifests: &Manifests, expected: &Expected) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut subscribed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, doc) in manifests.under(FOLDER) {
        if kind(doc) != Some("Subscription") {
            continue;
        }
        let topic = text_at(doc, &["spec", "topic"]).unwrap_or_default();
        let pubsub = text_at(doc, &["spec", "pubsubname"]).unwrap_or_default();
        if pubsub != expected.pubsub_name {
            found.push(Violation::new(
                file,
                Rule::ComponentName,
                format!(
                    "pubsubname is \"{pubsub}\", the code uses {}",
                    expected.pubsub_name
                ),
            ));
        }
        let route = text_at(doc, &["spec", "routes", "default"])
            .or_else(|| text_at(doc, &["spec", "route"]));
        let wanted_route = format!("/events/{topic}");
        if route.as_deref() != Some(wanted_route.as_str()) {
            found.push(Violation::new(
                file,
                Rule::SubscriptionRoute,
                format!(
                    "route is {:?}, the services serve {wanted_route}",
                    route.unwrap_or_default()
                ),
            ));
        }
        let apps = scopes(doc);
        if apps.is_empty() {
            found.push(Violation::new(
                file,
                Rule::SubscribedTopics,
                format!("subscription to {topic} has no scopes: every app would receive it"),
            ));
        }
        let dead_letter = text_at(doc, &["spec", "deadLetterTopic"]);
        for app in &apps {
            subscribed
                .entry(app.clone())
                .or_default()
                .insert(topic.clone());
            check_dead_letter(
                file,
                &topic,
                app,
                dead_letter.as_deref(),
                expected,
                &mut found,
            );
        }
    }

    let apps: BTreeSet<&String> = subscribed
        .keys()
        .chain(expected.subscriptions.keys())
        .collect();
    let none = BTreeSet::new();
    for app in apps {
        let have = subscribed.get(app).unwrap_or(&none);
        let want = expected.subscriptions.get(app).unwrap_or(&none);
        for topic in want.difference(have) {
            found.push(Violation::new(
                FOLDER.trim_end_matches('/'),
                Rule::SubscribedTopics,
                format!("{app} consumes {topic} in code, but no subscription here says so"),
            ));
        }
        for topic in have.difference(want) {
            found.push(Violation::new(
                FOLDER.trim_end_matches('/'),
                Rule::SubscribedTopics,
                format!("{app} is subscribed to {topic} here, but does not consume it in code"),
            ));
        }
    }
    found
}

fn check_dead_letter(
    file: &str,
    topic: &str,
    app: &str,
    dead_letter: Option<&str>,
    expected: &Expected,
    found: &mut Vec<Violation>,
) {
    let own = events::dead_letter_topic(app);
    match dead_letter {
        // An app's subscription to its own dead-letter topic has none: a DROP there would
        // republish to the topic it came from.
        None if topic == own => {}
        None => found.push(Violation::new(
            file,
            Rule::DeadLetterTopic,
            format!(
                "no deadLetterTopic: {app} would lose events it drops from {topic} (want {own})"
            ),
        )),
        Some(dl) if dl != own => found.push(Violation::new(
            file,
            Rule::DeadLetterTopic,
            format!("deadLetterTopic is {dl}, {app}'s dead-letter topic is {own}"),
        )),
        Some(dl) if !expected.topics.contains(dl) => found.push(Violation::new(
            file,
            Rule::DeadLetterTopic,
            format!("deadLetterTopic {dl} is not an allowed topic"),
        )),
        Some(_) => {}
    }
}
