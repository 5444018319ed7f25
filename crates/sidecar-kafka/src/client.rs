//! librdkafka configuration of the producer and the consumers, from [`KafkaSettings`], set up to
//! behave like the Sarama client daprd uses (`common/component/kafka/kafka.go Init`,
//! `producer.go GetSyncProducer`, `consumer.go`), and librdkafka's log lines routed to `tracing`
//! (with the last refused login kept, to explain a publish that fails because of it).

use crate::partitioner::LIBRDKAFKA_PARTITIONER;
use crate::settings::{Auth, InitialOffset, KafkaSettings};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connection, authentication and TLS settings shared by producer and consumers.
fn base(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("client.id", &settings.client_id)
        .set(
            "topic.metadata.refresh.interval.ms",
            settings.metadata_refresh.as_millis().to_string(),
        )
        // librdkafka logs to our context (below) instead of stderr.
        .set_log_level(RDKafkaLogLevel::Warning);
    let sasl = matches!(settings.auth, Auth::Password { .. });
    let protocol = match (sasl, settings.tls.is_some()) {
        (false, false) => "plaintext",
        (false, true) => "ssl",
        (true, false) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    config.set("security.protocol", protocol);
    if let Auth::Password {
        username,
        password,
        mechanism,
    } = &settings.auth
    {
        config
            .set("sasl.mechanisms", *mechanism)
            .set("sasl.username", username)
            .set("sasl.password", password.expose());
    }
    if let Some(tls) = &settings.tls {
        if let Some(ca) = &tls.ca_cert {
            config.set("ssl.ca.pem", ca);
        }
        if tls.skip_verify {
            config
                .set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        }
    }
    config
}

/// The producer: `acks=all`, 5 retries 100 ms apart, 10 s request timeout (Sarama's sync
/// producer as daprd configures it), Sarama's key hashing, and no batching delay.
pub(crate) fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base(settings);
    config
        .set("acks", "all")
        .set("message.send.max.retries", "5")
        .set("retry.backoff.ms", "100")
        .set("request.timeout.ms", "10000")
        .set("message.timeout.ms", "30000")
        // A publish to a topic the broker does not have fails within a second, as Sarama's
        // metadata retries (3 x 250 ms) do, instead of waiting 30 s for it to appear.
        .set("topic.metadata.propagation.max.ms", "1000")
        .set("partitioner", LIBRDKAFKA_PARTITIONER)
        .set("compression.codec", settings.compression)
        .set(
            "message.max.bytes",
            settings.max_message_bytes.max(1000).to_string(),
        )
        .set("linger.ms", "0")
        .set("enable.idempotence", "false");
    config
}

/// A consumer of `group`: offsets are stored only for handled messages and committed every
/// second (Sarama's auto-commit of marked offsets), and a group without a committed offset
/// starts at `initialOffset`.
pub(crate) fn consumer_config(settings: &KafkaSettings, group: &str) -> ClientConfig {
    let mut config = base(settings);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match settings.initial_offset {
                InitialOffset::Newest => "latest",
                InitialOffset::Oldest => "earliest",
            },
        )
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            settings.heartbeat_interval.as_millis().to_string(),
        )
        .set(
            "partition.assignment.strategy",
            settings.assignment_strategy,
        )
        .set(
            "fetch.min.bytes",
            settings.fetch_min_bytes.max(1).to_string(),
        )
        .set(
            "fetch.message.max.bytes",
            settings.fetch_default_bytes.max(1).to_string(),
        )
        // Kafka and Redpanda answer a fetch as soon as `fetch.min.bytes` has arrived; tansu holds
        // it for the whole `fetch.wait.max.ms`, so on tansu this wait is added to every delivery.
        // 20 ms keeps a local run's delivery latency close to a real broker's, for about 50 idle
        // fetches a second per consumer.
        .set("fetch.wait.max.ms", "20")
        .set("allow.auto.create.topics", "false");
    config
}

/// How long a refused login explains a failed publish: past this, a later failure has other
/// causes as likely (the producer's message timeout is 30 s, plus the 10 s queue wait).
const AUTH_FAILURE_RELEVANCE: Duration = Duration::from_secs(60);

/// Routes librdkafka's own log lines and errors to `tracing`, and remembers the last refused
/// login: librdkafka reports it only there and keeps retrying, so a publish meanwhile fails with
/// a bare timeout that says nothing of the cause.
#[derive(Debug, Clone, Default)]
pub(crate) struct TracingContext {
    auth_failure: Arc<Mutex<Option<(Instant, String)>>>,
}

impl TracingContext {
    /// librdkafka's words for the last authentication failure, if it was recent. They name the
    /// mechanism and the broker's answer, never the password.
    pub(crate) fn recent_auth_failure(&self) -> Option<String> {
        let last = self.auth_failure.lock().ok()?;
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < AUTH_FAILURE_RELEVANCE)
            .map(|(_, reason)| reason.clone())
    }
}

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", %fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", %fac, "{log_message}"),
            _ => tracing::debug!(target: "librdkafka", %fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication)
            && let Ok(mut last) = self.auth_failure.lock()
        {
            *last = Some((Instant::now(), reason.to_owned()));
        }
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_login_is_kept_to_explain_a_failed_publish() {
        let context = TracingContext::default();
        context.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "connection refused",
        );
        assert_eq!(context.recent_auth_failure(), None);
        context.error(
            KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: unknown-user",
        );
        assert_eq!(
            context.recent_auth_failure().as_deref(),
            Some("SASL authentication error: unknown-user")
        );
        // Clones share it: the producer's context is the one librdkafka calls.
        assert!(context.clone().recent_auth_failure().is_some());
    }
}
