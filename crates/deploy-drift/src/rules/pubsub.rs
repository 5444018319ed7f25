//! Components: `allowedTopics`, component names, consumer groups, and the Kafka run file's
//! use of the production pub/sub component, whose connection settings come from its Secret.

use std::collections::{BTreeMap, BTreeSet};

use yaml_serde::Value;

use crate::expected::Expected;
use crate::manifests::Manifests;
use crate::violation::{Rule, Violation};
use crate::yaml::{component_metadata, kind, scopes, seq_at, text_at};

/// Every copy of the pub/sub component that sets `allowedTopics` (component sets and overlay
/// patches alike) allows exactly the topics the code publishes or subscribes to.
pub fn allowed_topics(manifests: &Manifests, expected: &Expected) -> Vec<Violation> {
    let mut found = Vec::new();
    for (file, doc) in manifests.all() {
        if kind(doc) != Some("Component")
            || text_at(doc, &["metadata", "name"]).as_deref() != Some(&expected.pubsub_name)
        {
            continue;
        }
        let Some(list) = component_metadata(doc, "allowedTopics") else {
            continue;
        };
        let allowed: BTreeSet<String> = list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        for topic in expected.topics.difference(&allowed) {
            found.push(Violation::new(
                file,
                Rule::AllowedTopics,
                format!(
                    "topic {topic} is used in code but not in allowedTopics of {}",
                    expected.pubsub_name
                ),
            ));
        }
        for topic in allowed.difference(&expected.topics) {
            found.push(Violation::new(
                file,
                Rule::AllowedTopics,
                format!(
                    "allowedTopics of {} lists {topic}, which no code publishes or subscribes to",
                    expected.pubsub_name
                ),
            ));
        }
    }
    found
}

/// Each component set defines the pub/sub and the state store under the names the code uses.
pub fn component_names(manifests: &Manifests, expected: &Expected) -> Vec<Violation> {
    let mut found = Vec::new();
    for set in manifests.component_sets() {
        let components: Vec<(&str, &Value)> = manifests.components_in(&set).collect();
        if components.is_empty() {
            continue;
        }
        let wanted = [
            (&expected.pubsub_name, "pubsub."),
            (&expected.state_store_name, "state."),
        ];
        for (name, type_prefix) in wanted {
            let present = components.iter().any(|(_, doc)| {
                text_at(doc, &["metadata", "name"]).as_deref() == Some(name.as_str())
                    && text_at(doc, &["spec", "type"]).is_some_and(|t| t.starts_with(type_prefix))
            });
            if !present {
                found.push(Violation::new(
                    set.trim_end_matches('/'),
                    Rule::ComponentName,
                    format!("no {type_prefix}* component named {name} (the name the code uses)"),
                ));
            }
        }
    }
    found
}

/// A literal `consumerGroup`/`consumerID` puts every app using the component in one group, so
/// the services would steal each other's events. `{appID}` templates give one group per app.
pub fn consumer_groups(manifests: &Manifests) -> Vec<Violation> {
    let mut found = Vec::new();
    // literal group -> (file, apps scoped) of each component setting it
    let mut literals: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for (file, doc) in manifests.all() {
        let is_pubsub = kind(doc) == Some("Component")
            && text_at(doc, &["spec", "type"]).is_some_and(|t| t.starts_with("pubsub."));
        if !is_pubsub {
            continue;
        }
        for key in ["consumerGroup", "consumerID"] {
            let Some(value) = component_metadata(doc, key) else {
                continue;
            };
            if value.contains("{appID}") {
                continue;
            }
            let apps = scopes(doc);
            if apps.len() != 1 {
                let who = if apps.is_empty() {
                    "every app (no scopes)".to_owned()
                } else {
                    apps.join(", ")
                };
                found.push(Violation::new(
                    file,
                    Rule::SharedConsumerGroup,
                    format!(
                        "{key} \"{value}\" is one group shared by {who}; use {{appID}} or omit it"
                    ),
                ));
            }
            literals
                .entry(value)
                .or_default()
                .push((file.to_owned(), apps));
        }
    }
    for (value, users) in literals {
        let apps: BTreeSet<&String> = users.iter().flat_map(|(_, a)| a).collect();
        if apps.len() > 1 && users.len() > 1 {
            for (file, _) in &users {
                found.push(Violation::new(
                    file,
                    Rule::SharedConsumerGroup,
                    format!(
                        "consumer group \"{value}\" is also set for other apps ({})",
                        apps.iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    found
}

/// The run file that runs the services on Kafka.
pub const KAFKA_RUN_FILE: &str = "dapr.kafka.yaml";
/// The production pub/sub component file.
pub const PRODUCTION_PUBSUB: &str = "deploy/dapr/pubsub.yaml";

/// Entries of the production pub/sub that say where and how to connect: each must come from the
/// Secret through a `secretKeyRef`, so one file serves every environment (each with its own
/// Secret, or a local run's secrets file) and holds no credential.
pub const FROM_THE_SECRET: [&str; 7] = [
    "brokers",
    "authType",
    "saslMechanism",
    "saslUsername",
    "saslPassword",
    "disableTls",
    "caCert",
];

/// `dapr.kafka.yaml` loads the production pub/sub component as it is: a resources folder it names
/// defines the pub/sub, and every definition there is the one of `deploy/dapr/pubsub.yaml` (a
/// link to it, not an edited copy; the broker address and the authentication come through its
/// `secretKeyRef`s, every one of [`FROM_THE_SECRET`], never a literal value).
pub fn kafka_run_file(manifests: &Manifests, expected: &Expected) -> Vec<Violation> {
    let Some(run) = manifests.docs(KAFKA_RUN_FILE).and_then(<[Value]>::first) else {
        return Vec::new();
    };
    let is_pubsub = |doc: &Value| {
        kind(doc) == Some("Component")
            && text_at(doc, &["metadata", "name"]).as_deref() == Some(&expected.pubsub_name)
    };
    let Some(production) = manifests
        .docs(PRODUCTION_PUBSUB)
        .and_then(|docs| docs.iter().find(|d| is_pubsub(d)))
    else {
        return vec![Violation::new(
            PRODUCTION_PUBSUB,
            Rule::ProductionPubSub,
            format!("defines no component {}", expected.pubsub_name),
        )];
    };
    let folders: BTreeSet<String> = seq_at(run, &["common", "resourcesPaths"])
        .iter()
        .chain(
            seq_at(run, &["apps"])
                .iter()
                .flat_map(|app| seq_at(app, &["resourcesPaths"])),
        )
        .filter_map(crate::yaml::text)
        .map(|p| format!("{}/", p.trim_start_matches("./").trim_end_matches('/')))
        .collect();
    let mut found = connection_from_the_secret(production);
    let mut loaded = false;
    for folder in &folders {
        for (file, doc) in manifests.components_in(folder) {
            if !is_pubsub(doc) {
                continue;
            }
            loaded = true;
            if doc != production {
                found.push(Violation::new(
                    file,
                    Rule::ProductionPubSub,
                    format!(
                        "{} differs from {PRODUCTION_PUBSUB}; {KAFKA_RUN_FILE} must load the production file itself",
                        expected.pubsub_name
                    ),
                ));
            }
        }
    }
    if !loaded {
        found.push(Violation::new(
            KAFKA_RUN_FILE,
            Rule::ProductionPubSub,
            format!(
                "no resources folder defines {}; point resourcesPaths at a folder linking {PRODUCTION_PUBSUB}",
                expected.pubsub_name
            ),
        ));
    }
    found
}

/// The [`FROM_THE_SECRET`] entries of the production pub/sub that are missing or not a
/// `secretKeyRef` (a literal `authType: none` would pin every environment to plaintext; a literal
/// credential would be in the repository).
fn connection_from_the_secret(production: &Value) -> Vec<Violation> {
    let items = seq_at(production, &["spec", "metadata"]);
    FROM_THE_SECRET
        .iter()
        .filter_map(|name| {
            let item = items
                .iter()
                .find(|item| item.get("name").and_then(Value::as_str) == Some(name));
            let why = match item {
                None => "is missing",
                Some(item) if item.get("value").is_some() => "is a literal value",
                Some(item) if item.get("secretKeyRef").is_none() => "has no secretKeyRef",
                Some(_) => return None,
            };
            Some(Violation::new(
                PRODUCTION_PUBSUB,
                Rule::ProductionPubSub,
                format!(
                    "`{name}` {why}; it must come from the Secret through a secretKeyRef, so {KAFKA_RUN_FILE} takes it from the environment and no credential is written here"
                ),
            ))
        })
        .collect()
}
