//! [`KafkaPubSub`]: the `pubsub.kafka` component. One producer per component; one consumer
//! group member per subscription (see [`crate::consumer`]).

use crate::client::{TracingContext, producer_config};
use crate::consumer::Member;
use crate::record::{headers_of, key_of, value_of};
use crate::settings::KafkaSettings;
use futures::future::BoxFuture;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use sidecar_core::components::{
    Message, MessageHandler, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use sidecar_core::metadata::resolve_template;
use sidecar_core::resources::{ComponentSpec, ResourceError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a publish waits for room in librdkafka's local queue before failing.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Kafka pub/sub through librdkafka.
pub struct KafkaPubSub {
    settings: KafkaSettings,
    producer: FutureProducer<TracingContext>,
    /// The producer's context (it shares its state with the one librdkafka calls).
    client_context: TracingContext,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for KafkaPubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPubSub")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl KafkaPubSub {
    /// Validates the metadata of `spec` and creates the producer (which connects lazily).
    pub fn from_spec(spec: &ComponentSpec) -> Result<Self, ResourceError> {
        let settings = KafkaSettings::from_spec(spec)?;
        let client_context = TracingContext::default();
        let producer = producer_config(&settings)
            .create_with_context(client_context.clone())
            .map_err(|e| ResourceError::Field {
                file: spec.source.clone(),
                kind: "Component".into(),
                name: spec.name.clone(),
                field: "spec.metadata".into(),
                message: format!("the Kafka client refused the settings: {e}"),
            })?;
        Ok(Self {
            settings,
            producer,
            client_context,
            shutdown: CancellationToken::new(),
        })
    }

    /// The settings read from the component metadata.
    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    async fn publish_message(&self, msg: Message) -> Result<(), PubSubError> {
        let headers = headers_of(&msg.metadata, self.settings.exclude_header_meta.as_ref());
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&msg.topic).headers(headers);
        if let Some(key) = key_of(&msg.metadata) {
            record = record.key(key);
        }
        if let Some(value) = value_of(&msg) {
            record = record.payload(value);
        }
        match self
            .producer
            .send(record, Timeout::After(QUEUE_TIMEOUT))
            .await
        {
            Ok(_) => Ok(()),
            Err((e, _)) => {
                let cause = self
                    .client_context
                    .recent_auth_failure()
                    .map(|reason| {
                        format!("; the broker refused the client's authentication: {reason}")
                    })
                    .unwrap_or_default();
                Err(PubSubError(format!(
                    "kafka: failed to send message to topic {}: {e}{cause}",
                    msg.topic
                )))
            }
        }
    }

    async fn subscribe_topic(
        &self,
        req: SubscribeRequest,
        handler: MessageHandler,
    ) -> Result<Subscription, PubSubError> {
        let cancel = self.shutdown.child_token();
        let member = Member::join(
            &self.settings,
            &req.topic,
            &req.consumer_group,
            req.bulk_max_messages,
            handler,
            cancel.clone(),
        )?;
        let tracker = tokio_util::task::TaskTracker::new();
        tracker.spawn(member.run());
        Ok(Subscription::new(cancel, tracker))
    }
}

impl PubSub for KafkaPubSub {
    fn features(&self) -> Vec<String> {
        // `pubsub/kafka/kafka.go Features`: bulk publish and subscribe are native; TTL is not.
        vec!["BULK_PUBSUB".to_owned()]
    }

    /// `consumerGroup` (templates resolved for `app_id`) wins over `consumerID` and the app id
    /// (`common/component/kafka/metadata.go getKafkaMetadata`).
    fn consumer_group(&self, app_id: &str) -> Option<String> {
        self.settings
            .consumer_group
            .as_deref()
            .map(|g| resolve_template(g, app_id))
    }

    fn publish(&self, msg: Message) -> BoxFuture<'_, Result<(), PubSubError>> {
        Box::pin(self.publish_message(msg))
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: MessageHandler,
    ) -> BoxFuture<'_, Result<Subscription, PubSubError>> {
        Box::pin(self.subscribe_topic(req, handler))
    }

    /// Stops every subscription and flushes what is still queued for the brokers.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.shutdown.cancel();
        Box::pin(async move {
            let producer = self.producer.clone();
            let flushed =
                tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
            if let Ok(Err(e)) = flushed {
                tracing::warn!(error = %e, "kafka: producer flush at shutdown failed");
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn pubsub(extra: &[(&str, &str)]) -> KafkaPubSub {
        let spec = extra.iter().fold(
            ComponentSpec::new("todo-pubsub", "pubsub.kafka")
                .with_metadata("brokers", "127.0.0.1:1")
                .with_metadata("authType", "none"),
            |s, (k, v)| s.with_metadata(k, v),
        );
        KafkaPubSub::from_spec(&spec).unwrap()
    }

    #[test]
    fn consumer_group_wins_over_the_runtimes_choice_with_templates_resolved() {
        assert_eq!(pubsub(&[]).consumer_group("task-api"), None);
        let named = pubsub(&[
            ("consumerGroup", "{appID}-workers"),
            ("consumerID", "ignored"),
        ]);
        assert_eq!(
            named.consumer_group("task-api").as_deref(),
            Some("task-api-workers")
        );
        assert_eq!(named.features(), ["BULK_PUBSUB"]);
    }
}
