//! Pub/sub scopes: every copy of the pub/sub component limits each app to the topics the
//! `events` crate says it publishes and subscribes to.

use std::collections::{BTreeMap, BTreeSet};

use crate::expected::Expected;
use crate::manifests::Manifests;
use crate::violation::{Rule, Violation};
use crate::yaml::{component_metadata, kind, text_at};

/// Parses daprd's `app1=t1,t2;app2=t3` scope syntax (whitespace ignored, as daprd strips it in
/// `pkg/runtime/pubsub/scopes.go GetScopedTopics`).
fn parse_scopes(value: &str) -> BTreeMap<String, BTreeSet<String>> {
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    compact
        .split(';')
        .filter_map(|entry| entry.split_once('='))
        .map(|(app, topics)| {
            let topics = topics
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            (app.to_owned(), topics)
        })
        .collect()
}

/// Every copy of the pub/sub component that sets `allowedTopics` (component sets and overlay
/// patches alike) also sets `publishingScopes` and `subscriptionScopes`, each listing every app
/// with exactly the topics the code gives it. An app left out of a scope list may use every
/// allowed topic, so a missing app is as much a hole as a missing key.
pub fn pubsub_scopes(manifests: &Manifests, expected: &Expected) -> Vec<Violation> {
    let mut found = Vec::new();
    for (file, doc) in manifests.all() {
        if kind(doc) != Some("Component")
            || text_at(doc, &["metadata", "name"]).as_deref() != Some(&expected.pubsub_name)
            || component_metadata(doc, "allowedTopics").is_none()
        {
            continue;
        }
        for (key, wanted) in [
            ("publishingScopes", &expected.publishing),
            ("subscriptionScopes", &expected.subscribing),
        ] {
            let Some(value) = component_metadata(doc, key) else {
                found.push(Violation::new(
                    file,
                    Rule::PubsubScopes,
                    format!(
                        "{} has no {key}: every app may use every allowed topic",
                        expected.pubsub_name
                    ),
                ));
                continue;
            };
            let actual = parse_scopes(&value);
            for (app, topics) in wanted {
                let Some(given) = actual.get(app) else {
                    found.push(Violation::new(
                        file,
                        Rule::PubsubScopes,
                        format!("{key} does not list {app}, so it may use every allowed topic"),
                    ));
                    continue;
                };
                for topic in topics.difference(given) {
                    found.push(Violation::new(
                        file,
                        Rule::PubsubScopes,
                        format!("{key} of {app} lacks {topic}, which the code needs"),
                    ));
                }
                for topic in given.difference(topics) {
                    found.push(Violation::new(
                        file,
                        Rule::PubsubScopes,
                        format!("{key} of {app} grants {topic}, which the code does not use"),
                    ));
                }
            }
            for app in actual.keys().filter(|a| !wanted.contains_key(*a)) {
                found.push(Violation::new(
                    file,
                    Rule::PubsubScopes,
                    format!("{key} lists {app}, which is not an app of the system"),
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_syntax_is_read_like_daprd() {
        let parsed = parse_scopes("a=t1, t2; b=");
        assert_eq!(parsed["a"], BTreeSet::from(["t1".into(), "t2".into()]));
        assert!(parsed["b"].is_empty());
    }
}
