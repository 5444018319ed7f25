//! The shipped local component files (`deploy/local/in-memory`) give each app's sidecar only the
//! topics the `events` crate lets it publish: from reminder-scheduler's sidecar, a forged
//! `task-created` is refused with 403 `ERR_PUBSUB_FORBIDDEN` while its own `task-due-soon` and
//! its dead-letter topic go through. The production Kafka component (`deploy/dapr/pubsub.yaml`,
//! on a tansu broker of the test's own) carries the same scopes and is judged the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Sidecar, SidecarSpec, assert_error, assert_no_content, resources_dir};
use sidecar_testing::KafkaBroker;
use std::path::PathBuf;

fn in_memory_components() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/in-memory")
}

#[tokio::test]
async fn reminder_scheduler_cannot_publish_task_created_with_the_shipped_components() {
    let sidecar = Sidecar::start(SidecarSpec {
        app_id: "reminder-scheduler".into(),
        resources: vec![in_memory_components()],
        ..SidecarSpec::default()
    })
    .await;
    reminder_scheduler_publishes_only_its_own_topics(&sidecar).await;
}

/// The production component file as it is, its broker list read from a `kubernetes` secret
/// store (here a file store naming the test's broker), as `deploy/local/kafka` provides it.
#[tokio::test]
async fn reminder_scheduler_cannot_publish_task_created_with_the_production_kafka_component() {
    let broker = KafkaBroker::start();
    broker.create_topics_from(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/redpanda/topics.conf"),
    );
    let production = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/dapr/pubsub.yaml"),
    )
    .unwrap();
    let secrets_dir = tempfile::tempdir().unwrap();
    let secrets = secrets_dir.path().join("secrets.json");
    std::fs::write(&secrets, broker.production_secret(&[]).to_string()).unwrap();
    let store = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: kubernetes\nspec:\n  \
         type: secretstores.local.file\n  version: v1\n  metadata:\n    - name: secretsFile\n      \
         value: \"{}\"\n    - name: multiValued\n      value: \"true\"\n",
        secrets.display()
    );
    let resources = resources_dir(&[("pubsub.yaml", &production), ("secrets.yaml", &store)]);
    let sidecar = Sidecar::start(SidecarSpec {
        app_id: "reminder-scheduler".into(),
        resources: vec![resources.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    reminder_scheduler_publishes_only_its_own_topics(&sidecar).await;
}

async fn reminder_scheduler_publishes_only_its_own_topics(sidecar: &Sidecar) {
    let forged = r#"{"event_type": "task-created", "source": "task-api"}"#;
    let refused = sidecar
        .publish(
            "todo-pubsub",
            "task-created",
            "",
            Some("application/json"),
            forged,
        )
        .await;
    let body = assert_error(refused, 403, "ERR_PUBSUB_FORBIDDEN").await;
    assert!(
        body["message"].as_str().unwrap().contains("task-created"),
        "{body}"
    );
    // A CloudEvent that names another source is refused just the same: the topic decides.
    let as_cloud_event = r#"{"specversion": "1.0", "id": "x", "source": "task-api",
        "type": "task-created", "data": {}}"#;
    let refused = sidecar
        .publish(
            "todo-pubsub",
            "task-created",
            "",
            Some("application/cloudevents+json"),
            as_cloud_event,
        )
        .await;
    assert_error(refused, 403, "ERR_PUBSUB_FORBIDDEN").await;

    for own in ["task-due-soon", "reminder-scheduler-dead-letters"] {
        let allowed = sidecar
            .publish("todo-pubsub", own, "", Some("application/json"), "{}")
            .await;
        assert_no_content(allowed).await;
    }
    let not_its_dead_letters = sidecar
        .publish(
            "todo-pubsub",
            "email-worker-dead-letters",
            "",
            Some("application/json"),
            "{}",
        )
        .await;
    assert_error(not_its_dead_letters, 403, "ERR_PUBSUB_FORBIDDEN").await;
}

#[tokio::test]
async fn task_api_may_publish_its_topics_and_subscribes_to_none() {
    let sidecar = Sidecar::start(SidecarSpec {
        app_id: "task-api".into(),
        resources: vec![in_memory_components()],
        ..SidecarSpec::default()
    })
    .await;
    let allowed = sidecar
        .publish(
            "todo-pubsub",
            "task-created",
            "",
            Some("application/json"),
            "{}",
        )
        .await;
    assert_no_content(allowed).await;
    let refused = sidecar
        .publish(
            "todo-pubsub",
            "notification-sent",
            "",
            Some("application/json"),
            "{}",
        )
        .await;
    assert_error(refused, 403, "ERR_PUBSUB_FORBIDDEN").await;
}
