//! Publishing: `POST /v1.0/publish/{pubsub}/{topic}`.
//!
//! Envelopes are published as `application/json`, so daprd embeds them under the CloudEvent's
//! `data`, with the CloudEvent `id`/`type` overridden by the envelope's `event_id`/`event_type`
//! (consumers deduplicate on the CloudEvent id) and `partitionKey` set to the task id (per-task
//! order on Kafka). Because the id is fixed, a retried publish is a duplicate that consumers drop,
//! which is what makes retrying connection errors and 5xx safe.

use std::collections::BTreeMap;

use bytes::Bytes;
use events::{Envelope, EventPayload};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;

use crate::error::Target;
use crate::{DaprClient, DaprError};

/// Options of one publish call. `Default` publishes `application/json` with no overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// `Content-Type` of the body; `application/json` when `None`.
    pub content_type: Option<String>,
    /// Sent as `metadata.cloudevent.id`.
    pub cloudevent_id: Option<String>,
    /// Sent as `metadata.cloudevent.type`.
    pub cloudevent_type: Option<String>,
    /// Sent as `metadata.partitionKey` (the Kafka record key).
    pub partition_key: Option<String>,
    /// W3C `traceparent` header, continuing the caller's trace.
    pub traceparent: Option<String>,
    /// Sends `metadata.rawPayload=true`: the body goes to the broker without a CloudEvent.
    pub raw_payload: bool,
    /// Further `metadata.<key>=<value>` query parameters (e.g. `ttlInSeconds`).
    pub metadata: BTreeMap<String, String>,
}

impl PublishOptions {
    /// The options [`DaprClient::publish`] uses for an envelope: JSON, CloudEvent id/type from the
    /// envelope, partition key from the payload.
    pub fn for_envelope<T: EventPayload>(envelope: &Envelope<T>) -> Self {
        Self {
            content_type: None,
            cloudevent_id: Some(envelope.event_id.to_string()),
            cloudevent_type: Some(envelope.event_type.clone()),
            partition_key: envelope.partition_key(),
            traceparent: None,
            raw_payload: false,
            metadata: BTreeMap::new(),
        }
    }

    /// Sets the `traceparent` header.
    pub fn traceparent(mut self, traceparent: Option<impl Into<String>>) -> Self {
        self.traceparent = traceparent.map(Into::into);
        self
    }

    /// The query parameters daprd reads, in a stable order.
    fn query(&self) -> Vec<(String, String)> {
        let mut query = Vec::new();
        let mut add =
            |key: &str, value: &str| query.push((format!("metadata.{key}"), value.to_owned()));
        if let Some(id) = &self.cloudevent_id {
            add("cloudevent.id", id);
        }
        if let Some(event_type) = &self.cloudevent_type {
            add("cloudevent.type", event_type);
        }
        if let Some(key) = &self.partition_key {
            add("partitionKey", key);
        }
        if self.raw_payload {
            add("rawPayload", "true");
        }
        for (key, value) in &self.metadata {
            add(key, value);
        }
        query
    }
}

impl DaprClient {
    /// Publishes `envelope` on its topic (`T::TOPIC`) of `pubsub`; see the module docs.
    pub async fn publish<T: EventPayload>(
        &self,
        pubsub: &str,
        envelope: &Envelope<T>,
    ) -> Result<(), DaprError> {
        self.publish_traced(pubsub, envelope, None).await
    }

    /// [`DaprClient::publish`] continuing the caller's trace with a W3C `traceparent`.
    pub async fn publish_traced<T: EventPayload>(
        &self,
        pubsub: &str,
        envelope: &Envelope<T>,
        traceparent: Option<&str>,
    ) -> Result<(), DaprError> {
        let body = serde_json::to_vec(envelope).map_err(|source| DaprError::Encode {
            what: format!("a `{}` envelope", envelope.event_type),
            source,
        })?;
        let opts = PublishOptions::for_envelope(envelope).traceparent(traceparent);
        self.publish_with(pubsub, envelope.topic().as_str(), Bytes::from(body), opts)
            .await
    }

    /// Publishes raw `body` bytes to `topic` with explicit options. Retries connection errors
    /// and 5xx per [`crate::DaprSettings::publish_retry`]; never retries 4xx. Without
    /// `cloudevent_id` (and not raw) only connection failures are retried, since a retry after a
    /// 5xx or timeout could publish a second event with a new random id.
    pub async fn publish_with(
        &self,
        pubsub: &str,
        topic: &str,
        body: Bytes,
        opts: PublishOptions,
    ) -> Result<(), DaprError> {
        let mut url = self.url(&["v1.0", "publish", pubsub, topic]);
        {
            let query = opts.query();
            if !query.is_empty() {
                url.query_pairs_mut().extend_pairs(query);
            }
        }
        let content_type = opts.content_type.as_deref().unwrap_or("application/json");
        // With a fixed id (or a raw envelope that carries its own id) a publish that reached the
        // broker before failing is a duplicate consumers drop; without one, only failures that
        // certainly sent nothing (connection refused) are retried.
        let idempotent = opts.cloudevent_id.is_some() || opts.raw_payload;
        let policy = self.publish_retry();
        let max_attempts = policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let request = self
                .request(Method::POST, url.clone())
                .header(CONTENT_TYPE, content_type)
                .body(body.clone());
            let sent = self
                .send_traced(
                    request,
                    Target::Pubsub(pubsub),
                    "publish",
                    opts.traceparent.as_deref(),
                )
                .await;
            match sent {
                Ok(_) => return Ok(()),
                Err(error) if attempt < max_attempts && retryable(&error, idempotent) => {
                    let delay = policy.delay(attempt);
                    tracing::warn!(
                        pubsub,
                        topic,
                        attempt,
                        max_attempts,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        %error,
                        "publish failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

fn retryable(error: &DaprError, idempotent: bool) -> bool {
    match error {
        DaprError::SidecarUnavailable { source, .. } if !idempotent => {
            source.as_ref().is_some_and(reqwest::Error::is_connect)
        }
        _ => idempotent && error.is_transient(),
    }
}
