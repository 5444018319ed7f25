//! The resources of `dapr.kafka.yaml` for a test: a copy of `deploy/local/kafka` (the production
//! pub/sub component through its link, Redis state) pointed at the test's Redis, and the secrets
//! file its `kubernetes` store reads, naming the test's broker and no authentication.

use std::path::Path;

use anyhow::{Context, ensure};

use crate::{KafkaBroker, RedisServer};

/// What `scripts/run-local.sh --kafka` prepares, for `broker` and `redis`, into `to`: the broker's
/// topics from `deploy/redpanda/topics.conf`, the component files, and the secrets file (in `to`).
pub fn kafka_resources(
    workspace: &Path,
    redis: &RedisServer,
    broker: &KafkaBroker,
    to: &Path,
) -> anyhow::Result<()> {
    broker.create_topics_from(&workspace.join("deploy/redpanda/topics.conf"));
    redis.resources_copy(&workspace.join("deploy/local/kafka"), to)?;
    let production = std::fs::read_to_string(workspace.join("deploy/dapr/pubsub.yaml"))?;
    ensure!(
        std::fs::read_to_string(to.join("pubsub.yaml"))? == production,
        "deploy/local/kafka/pubsub.yaml is not the production component file"
    );
    let secrets = to.join("kafka-secrets.json");
    std::fs::write(&secrets, broker.production_secret(&[]).to_string())?;
    let store = to.join("kubernetes-secrets.yaml");
    let text = std::fs::read_to_string(&store).with_context(|| format!("{}", store.display()))?;
    ensure!(
        text.contains(".local/kafka/secrets.json"),
        "{} no longer reads .local/kafka/secrets.json",
        store.display()
    );
    std::fs::write(
        &store,
        text.replace(".local/kafka/secrets.json", &secrets.display().to_string()),
    )?;
    Ok(())
}
