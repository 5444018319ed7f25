//! The repository's manifests agree with the code, and breaking any one drift rule in a copy of
//! them makes the checks report that file and that rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use deploy_drift::violation::report;
use deploy_drift::{Expected, Rule, Service, Sources, Violation, check_all};
use service_kit::LayeredSettings as _;

const JWT_SECRET: &str = "drift-test-secret-0123456789abcdef0123456789";
const ADMIN_TOKEN: &str = "drift-test-admin-token-0123";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// App ids and ports as each service's own settings load them with no environment (beyond the
/// secrets a service refuses to start without).
fn services() -> Vec<Service> {
    let task_api = task_api::Settings::load_from(env(&[("JWT_SECRET", JWT_SECRET)])).unwrap();
    let email = email_worker::Settings::load_from(env(&[])).unwrap();
    let reminder = reminder_scheduler::Settings::load_from(env(&[])).unwrap();
    let audit = audit_logger::Settings::load_from(env(&[
        ("AUDIT_ADMIN_TOKEN", ADMIN_TOKEN),
        ("AUDIT_CHAIN_KEY", "drift-test-chain-key-0123456789abcdef"),
    ]))
    .unwrap();
    let services = vec![
        Service {
            app_id: task_api.common.app_id,
            app_port: task_api.common.app_port,
        },
        Service {
            app_id: email.common.app_id,
            app_port: email.common.app_port,
        },
        Service {
            app_id: reminder.common.app_id,
            app_port: reminder.common.app_port,
        },
        Service {
            app_id: audit.common.app_id,
            app_port: audit.common.app_port,
        },
    ];
    let ids: Vec<&str> = services.iter().map(|s| s.app_id.as_str()).collect();
    assert_eq!(
        ids,
        events::apps::ALL,
        "settings app ids differ from events::apps"
    );
    services
}

fn expected() -> Expected {
    Expected::from_code(services())
}

fn sources() -> Sources {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    Sources::load(&root).unwrap()
}

/// The repository's files with one exact text in one file replaced.
fn with_edit(file: &str, from: &str, to: &str) -> Vec<Violation> {
    let mut sources = sources();
    let text = sources
        .files
        .get_mut(file)
        .unwrap_or_else(|| panic!("{file} is not among the manifests"));
    assert_eq!(
        text.matches(from).count(),
        1,
        "{file} should contain {from:?} exactly once"
    );
    *text = text.replacen(from, to, 1);
    check_all(&sources.parse(), &expected())
}

/// The repository's files with one exact text replaced inside the value of one component
/// metadata item (`- name: <item>` and the `value:` line after it) of one file.
fn with_metadata_edit(file: &str, item: &str, from: &str, to: &str) -> Vec<Violation> {
    let mut sources = sources();
    let text = sources
        .files
        .get_mut(file)
        .unwrap_or_else(|| panic!("{file} is not among the manifests"));
    let anchor = format!("- name: {item}\n");
    let start = text
        .find(&anchor)
        .unwrap_or_else(|| panic!("{file} has no {item}"))
        + anchor.len();
    let end = start + text[start..].find('\n').unwrap();
    let line = &text[start..end];
    assert_eq!(
        line.matches(from).count(),
        1,
        "{item} of {file} should contain {from:?} exactly once"
    );
    let edited = line.replacen(from, to, 1);
    text.replace_range(start..end, &edited);
    check_all(&sources.parse(), &expected())
}

fn without(file: &str) -> Vec<Violation> {
    let mut sources = sources();
    assert!(sources.files.remove(file).is_some(), "{file} missing");
    check_all(&sources.parse(), &expected())
}

/// The report names the file and the rule; and only that rule fired.
fn assert_fires(found: &[Violation], file: &str, rule: Rule) {
    let text = report(found);
    assert!(
        text.contains(&format!("{file}: [{rule}]")),
        "expected a {rule} violation in {file}, got:\n{text}"
    );
    assert!(
        found.iter().all(|v| v.rule == rule),
        "only {rule} should fire, got:\n{text}"
    );
}

#[test]
fn the_repository_has_no_drift() {
    let sources = sources();
    for must in [
        "deploy/dapr/pubsub.yaml",
        "deploy/compose/components/pubsub.yaml",
        "deploy/local/in-memory/pubsub.yaml",
        "deploy/local/redis/pubsub.yaml",
        "dapr.yaml",
        "dapr.redis.yaml",
        "dapr.kafka.yaml",
        "deploy/local/kafka/pubsub.yaml",
        "docker-compose.yml",
    ] {
        assert!(sources.files.contains_key(must), "{must} not loaded");
    }
    let found = check_all(&sources.parse(), &expected());
    assert!(found.is_empty(), "drift:\n{}", report(&found));
}

#[test]
fn a_missing_deployment_is_reported() {
    let file = "deploy/k8s/base/audit-logger/deployment.yaml";
    assert_fires(&without(file), file, Rule::DeploymentPresent);
}

#[test]
fn a_wrong_app_id_annotation_is_reported() {
    let file = "deploy/k8s/base/email-worker/deployment.yaml";
    let found = with_edit(
        file,
        r#"dapr.io/app-id: "email-worker""#,
        r#"dapr.io/app-id: "mailer""#,
    );
    assert_fires(&found, file, Rule::DaprAppId);
}

#[test]
fn a_wrong_app_port_annotation_is_reported() {
    let file = "deploy/k8s/base/task-api/deployment.yaml";
    let found = with_edit(
        file,
        r#"dapr.io/app-port: "8080""#,
        r#"dapr.io/app-port: "80""#,
    );
    assert_fires(&found, file, Rule::DaprAppPort);
}

#[test]
fn a_wrong_container_port_is_reported() {
    let file = "deploy/k8s/base/reminder-scheduler/deployment.yaml";
    let found = with_edit(file, "containerPort: 8082", "containerPort: 8092");
    assert_fires(&found, file, Rule::ContainerPort);
}

#[test]
fn a_wrong_configmap_app_port_or_id_is_reported() {
    let file = "deploy/k8s/base/audit-logger/configmap.yaml";
    assert_fires(
        &with_edit(file, r#"APP_PORT: "8083""#, r#"APP_PORT: "9083""#),
        file,
        Rule::ConfigMapEnv,
    );
    assert_fires(
        &with_edit(file, r#"APP_ID: "audit-logger""#, r#"APP_ID: "audit""#),
        file,
        Rule::ConfigMapEnv,
    );
}

/// Every copy of the pub/sub component that lists allowedTopics.
const PUBSUB_FILES: [&str; 5] = [
    "deploy/dapr/pubsub.yaml",
    "deploy/k8s/overlays/prod/patches/pubsub-sasl-tls.yaml",
    "deploy/compose/components/pubsub.yaml",
    "deploy/local/in-memory/pubsub.yaml",
    "deploy/local/redis/pubsub.yaml",
];

#[test]
fn a_topic_missing_from_allowed_topics_is_reported_in_every_component_copy() {
    for file in PUBSUB_FILES {
        let found = with_metadata_edit(file, "allowedTopics", ",task-due-soon,", ",");
        assert_fires(&found, file, Rule::AllowedTopics);
        assert!(report(&found).contains("task-due-soon"));
        let found = with_metadata_edit(
            file,
            "allowedTopics",
            ",reminder-scheduler-dead-letters,",
            ",",
        );
        assert_fires(&found, file, Rule::AllowedTopics);
    }
}

#[test]
fn an_unknown_allowed_topic_is_reported() {
    for file in PUBSUB_FILES {
        let found = with_metadata_edit(
            file,
            "allowedTopics",
            "task-created,",
            "task-created,task-archived,",
        );
        assert_fires(&found, file, Rule::AllowedTopics);
        assert!(report(&found).contains("task-archived"));
    }
}

#[test]
fn a_pubsub_copy_without_scopes_is_reported() {
    for file in PUBSUB_FILES {
        for key in ["publishingScopes", "subscriptionScopes"] {
            let mut sources = sources();
            let text = sources.files.get_mut(file).unwrap();
            let anchor = format!("    - name: {key}\n");
            let start = text.find(&anchor).unwrap();
            let value_end = start + anchor.len() + text[start + anchor.len()..].find('\n').unwrap();
            text.replace_range(start..=value_end, "");
            let found = check_all(&sources.parse(), &expected());
            assert_fires(&found, file, Rule::PubsubScopes);
            assert!(report(&found).contains(&format!("has no {key}")));
        }
    }
}

#[test]
fn a_scope_granting_another_apps_topic_is_reported() {
    for file in PUBSUB_FILES {
        // reminder-scheduler could forge task-created (and so make email-worker mail anyone).
        let found = with_metadata_edit(
            file,
            "publishingScopes",
            "reminder-scheduler=",
            "reminder-scheduler=task-created,",
        );
        assert_fires(&found, file, Rule::PubsubScopes);
        assert!(
            report(&found).contains("publishingScopes of reminder-scheduler grants task-created")
        );
        // A subscriber without publish rights on its dead-letter topic loses what it drops.
        let found = with_metadata_edit(
            file,
            "publishingScopes",
            "email-worker=email-worker-dead-letters,",
            "email-worker=",
        );
        assert_fires(&found, file, Rule::PubsubScopes);
        assert!(report(&found).contains("lacks email-worker-dead-letters"));
        // An app missing from a scope list is unrestricted.
        let found = with_metadata_edit(file, "subscriptionScopes", "task-api=;", "");
        assert_fires(&found, file, Rule::PubsubScopes);
        assert!(report(&found).contains("subscriptionScopes does not list task-api"));
    }
}

#[test]
fn a_renamed_component_is_reported_for_its_set() {
    let found = with_edit(
        "deploy/compose/components/statestore.yaml",
        "name: todo-state",
        "name: todo-store",
    );
    assert_fires(&found, "deploy/compose/components", Rule::ComponentName);
    let found = with_edit(
        "deploy/local/in-memory/pubsub.yaml",
        "name: todo-pubsub",
        "name: pubsub",
    );
    assert_fires(&found, "deploy/local/in-memory", Rule::ComponentName);
}

#[test]
fn a_literal_consumer_group_shared_by_apps_is_reported_and_a_template_is_not() {
    let file = "deploy/dapr/pubsub.yaml";
    let anchor = "    - name: initialOffset\n";
    for key in ["consumerGroup", "consumerID"] {
        let found = with_edit(
            file,
            anchor,
            &format!("    - name: {key}\n      value: \"todo\"\n{anchor}"),
        );
        assert_fires(&found, file, Rule::SharedConsumerGroup);
        let found = with_edit(
            file,
            anchor,
            &format!("    - name: {key}\n      value: \"{{appID}}\"\n{anchor}"),
        );
        assert!(found.is_empty(), "{}", report(&found));
    }
}

const SUBS: &str = "deploy/dapr/subscriptions-declarative";

#[test]
fn a_wrong_or_missing_dead_letter_topic_is_reported() {
    let file = format!("{SUBS}/email-worker--task-created.yaml");
    let found = with_edit(
        &file,
        "deadLetterTopic: email-worker-dead-letters",
        "deadLetterTopic: audit-logger-dead-letters",
    );
    assert_fires(&found, &file, Rule::DeadLetterTopic);
    let found = with_edit(&file, "  deadLetterTopic: email-worker-dead-letters\n", "");
    assert_fires(&found, &file, Rule::DeadLetterTopic);
}

#[test]
fn a_subscription_missing_or_extra_is_reported() {
    let found = without(&format!("{SUBS}/email-worker--task-due-soon.yaml"));
    assert_fires(&found, SUBS, Rule::SubscribedTopics);
    assert!(report(&found).contains("email-worker consumes task-due-soon"));

    // reminder-scheduler's task-updated subscription moved to the audit-logger's scope, which
    // already has one: the reminder-scheduler misses it.
    let file = format!("{SUBS}/reminder-scheduler--task-updated.yaml");
    let found = with_edit(&file, "  - reminder-scheduler\n", "  - audit-logger\n");
    let text = report(&found);
    assert!(
        text.contains(&format!("{SUBS}: [subscribed-topics]"))
            && text.contains("reminder-scheduler consumes task-updated"),
        "{text}"
    );
}

#[test]
fn a_wrong_route_is_reported() {
    let file = format!("{SUBS}/audit-logger--task-deleted.yaml");
    let found = with_edit(
        &file,
        "default: /events/task-deleted",
        "default: /task-deleted",
    );
    assert_fires(&found, &file, Rule::SubscriptionRoute);
}

#[test]
fn run_file_apps_and_ports_are_checked() {
    let found = with_edit("dapr.yaml", "appPort: 8081", "appPort: 8091");
    assert_fires(&found, "dapr.yaml", Rule::RunFileApps);
    let found = with_edit(
        "dapr.redis.yaml",
        "appID: reminder-scheduler",
        "appID: reminders",
    );
    assert_fires(&found, "dapr.redis.yaml", Rule::RunFileApps);
    assert!(report(&found).contains("reminder-scheduler is missing"));
}

/// The Kafka run file must load production's pub/sub component through a link, so a local
/// run cannot drift from it: an edited copy in its folder, or a folder with another pub/sub, is
/// reported; an edit of the production file shows through the link and is not.
#[test]
fn the_kafka_run_file_loads_the_production_pubsub_itself() {
    let link = "deploy/local/kafka/pubsub.yaml";
    let mut copied = sources();
    assert_eq!(
        copied.links.remove(link).as_deref(),
        Some("deploy/dapr/pubsub.yaml"),
        "{link} must be a link to the production file"
    );
    let text = copied.files.get_mut(link).unwrap();
    let reference = "secretKeyRef:\n        name: todo-kafka\n        key: brokers";
    assert!(text.contains(reference), "{text}");
    *text = text.replace(reference, "value: \"127.0.0.1:9092\"");
    let found = check_all(&copied.parse(), &expected());
    assert_fires(&found, link, Rule::ProductionPubSub);

    let found = with_edit(
        "dapr.kafka.yaml",
        "resourcesPaths: [./deploy/local/kafka]",
        "resourcesPaths: [./deploy/local/redis]",
    );
    assert_fires(
        &found,
        "deploy/local/redis/pubsub.yaml",
        Rule::ProductionPubSub,
    );

    let found = with_edit(
        "deploy/dapr/pubsub.yaml",
        "initialOffset\n      value: \"oldest\"",
        "initialOffset\n      value: \"newest\"",
    );
    assert!(found.is_empty(), "{}", report(&found));
}

#[test]
fn a_literal_auth_type_or_credential_in_the_production_pubsub_is_reported() {
    let file = "deploy/dapr/pubsub.yaml";
    let edits = [
        (
            "authType\n      secretKeyRef:\n        name: todo-kafka\n        key: auth-type",
            "authType\n      value: \"none\"",
            "`authType` is a literal value",
        ),
        (
            "saslPassword\n      secretKeyRef:\n        name: todo-kafka\n        key: password",
            "saslPassword\n      value: \"hunter2\"",
            "`saslPassword` is a literal value",
        ),
        (
            "saslUsername\n      secretKeyRef:\n        name: todo-kafka\n        key: username",
            "saslUsername\n      value: \"todo\"",
            "`saslUsername` is a literal value",
        ),
        (
            "    - name: saslMechanism\n      secretKeyRef:\n        name: todo-kafka\n        key: sasl-mechanism\n",
            "",
            "`saslMechanism` is missing",
        ),
    ];
    for (from, to, why) in edits {
        let found = with_edit(file, from, to);
        assert_fires(&found, file, Rule::ProductionPubSub);
        let text = report(&found);
        assert!(text.contains(why), "{why}: {text}");
    }
}

#[test]
fn a_file_that_does_not_parse_is_reported() {
    let file = "deploy/local/redis/statestore.yaml";
    let found = with_edit(file, "kind: Component", "kind: [Component");
    // The file's components are then missing from its set too; the syntax error is what names it.
    let text = report(&found);
    assert!(text.contains(&format!("{file}: [yaml-syntax]")), "{text}");
}

const COMPOSE: &str = "docker-compose.yml";

#[test]
fn a_compose_secret_with_a_default_or_a_literal_is_reported() {
    let found = with_edit(
        COMPOSE,
        "JWT_SECRET: ${TODO_JWT_SECRET:?run scripts/compose-env.sh to create .env}",
        "JWT_SECRET: ${TODO_JWT_SECRET:-compose-only-jwt-secret-at-least-32-bytes}",
    );
    assert_fires(&found, COMPOSE, Rule::ComposeSecrets);
    assert!(report(&found).contains("TODO_JWT_SECRET"));
    let found = with_edit(
        COMPOSE,
        "AUDIT_ADMIN_TOKEN: ${TODO_AUDIT_ADMIN_TOKEN:?run scripts/compose-env.sh to create .env}",
        "AUDIT_ADMIN_TOKEN: compose-only-audit-admin-token",
    );
    assert_fires(&found, COMPOSE, Rule::ComposeSecrets);
    assert!(report(&found).contains("audit-logger: AUDIT_ADMIN_TOKEN"));
}

#[test]
fn a_compose_port_on_every_interface_is_reported() {
    let found = with_edit(COMPOSE, r#"- "127.0.0.1:8080:8080""#, r#"- "8080:8080""#);
    assert_fires(&found, COMPOSE, Rule::ComposePorts);
    assert!(report(&found).contains("task-api: port 8080:8080"));
    let found = with_edit(
        COMPOSE,
        r#"- "127.0.0.1:8025:8025""#,
        r#"- "0.0.0.0:8025:8025""#,
    );
    assert_fires(&found, COMPOSE, Rule::ComposePorts);
}

#[test]
fn an_ingress_routing_more_than_the_api_is_reported() {
    let file = "deploy/k8s/overlays/prod/ingress.yaml";
    let found = with_edit(file, "- path: /api\n", "- path: /\n");
    assert_fires(&found, file, Rule::IngressPaths);
    assert!(report(&found).contains(r#"routes "/""#));
}

#[test]
fn an_unpinned_image_is_reported() {
    let file = "deploy/k8s/base/task-api/deployment.yaml";
    let found = with_edit(
        file,
        "image: todo/task-api:0.1.0",
        "image: todo/task-api:latest",
    );
    assert_fires(&found, file, Rule::ImageTags);
    let found = with_edit(file, "image: todo/task-api:0.1.0", "image: todo/task-api");
    assert_fires(&found, file, Rule::ImageTags);
    let found = with_edit(COMPOSE, "image: redis:7.4-alpine", "image: redis");
    assert_fires(&found, COMPOSE, Rule::ImageTags);
    let file = "deploy/k8s/overlays/dev/kustomization.yaml";
    let found = with_edit(
        file,
        "  - name: todo/task-api\n    newTag: dev",
        "  - name: todo/task-api\n    newTag: latest",
    );
    assert_fires(&found, file, Rule::ImageTags);
}

#[test]
fn a_resiliency_copy_that_differs_from_production_is_reported() {
    let found = with_edit(
        "deploy/local/redis/resiliency.yaml",
        "maxRetries: 16",
        "maxRetries: 3",
    );
    assert_fires(
        &found,
        "deploy/local/redis/resiliency.yaml",
        Rule::ResiliencyCopies,
    );
}

#[test]
fn a_component_breaker_or_state_retry_is_reported() {
    let found = with_edit(
        "deploy/dapr/resiliency.yaml",
        "          retry: deliveryRetry\n",
        "          retry: deliveryRetry\n          circuitBreaker: deliveryBreaker\n",
    );
    assert!(
        found.iter().any(|v| v.rule == Rule::ResiliencyBreaker
            && v.file == "deploy/dapr/resiliency.yaml"
            && v.message.contains("todo-pubsub.inbound")),
        "{}",
        report(&found)
    );
    let found = with_edit(
        "deploy/dapr/resiliency.yaml",
        "          timeout: state\n",
        "          timeout: state\n          retry: publishRetry\n",
    );
    assert!(
        found
            .iter()
            .any(|v| v.rule == Rule::ResiliencyBreaker && v.message.contains("todo-state")),
        "{}",
        report(&found)
    );
}

#[test]
fn trace_settings_that_disagree_are_reported() {
    let component = "deploy/k8s/base/tracing/kustomization.yaml";
    // The sidecars' collector is not the services'.
    let found = with_edit(
        "deploy/k8s/base/tracing/configuration-otel.yaml",
        "otel-collector.observability.svc.cluster.local:4318",
        "otel-collector.monitoring.svc.cluster.local:4318",
    );
    assert_fires(
        &found,
        "deploy/k8s/base/tracing/configuration-otel.yaml",
        Rule::TracingSettings,
    );
    // The services sample another share of new traces than the sidecars.
    let found = with_edit(
        component,
        "OTEL_TRACES_SAMPLER_ARG=0.1",
        "OTEL_TRACES_SAMPLER_ARG=0.5",
    );
    assert_fires(&found, component, Rule::TracingSettings);
    let found = with_edit(
        "deploy/k8s/overlays/dev/kustomization.yaml",
        "OTEL_TRACES_SAMPLER_ARG=1",
        "OTEL_TRACES_SAMPLER_ARG=0.1",
    );
    assert_fires(
        &found,
        "deploy/k8s/overlays/dev/kustomization.yaml",
        Rule::TracingSettings,
    );
    // A service that does not load the settings.
    let found = with_edit(
        "deploy/k8s/base/email-worker/deployment.yaml",
        "                name: otel-exporter\n",
        "                name: email-worker-env\n",
    );
    assert_fires(
        &found,
        "deploy/k8s/base/email-worker/deployment.yaml",
        Rule::TracingSettings,
    );
    // docker-compose's Configuration may differ in spec.tracing only.
    let found = with_edit(
        "deploy/compose/configuration.yaml",
        "defaultAction: deny",
        "defaultAction: allow",
    );
    assert_fires(
        &found,
        "deploy/compose/configuration.yaml",
        Rule::TracingSettings,
    );
}
