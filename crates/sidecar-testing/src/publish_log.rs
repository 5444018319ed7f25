//! The log of what was published: every message a broker of the harness accepted, by topic, so a
//! test can wait for and inspect events (dead letters included).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// Messages kept per topic (oldest dropped first), so a long run does not grow without bound.
pub const PUBLISH_LOG_LIMIT: usize = 10_000;

/// Published messages by topic, across every pub/sub of a cluster.
#[derive(Debug, Default)]
pub struct PublishLog {
    topics: Mutex<BTreeMap<String, VecDeque<serde_json::Value>>>,
    changed: Notify,
}

impl PublishLog {
    /// The message as a test reads it: its JSON (a CloudEvent, or a raw JSON payload), or the
    /// bytes as a string when they are not JSON.
    pub fn value_of(data: &[u8]) -> serde_json::Value {
        serde_json::from_slice(data).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(data).into_owned())
        })
    }

    /// Appends one accepted message and wakes the waiters.
    pub fn record(&self, topic: String, value: serde_json::Value) {
        {
            let mut topics = self
                .topics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entries = topics.entry(topic).or_default();
            if entries.len() >= PUBLISH_LOG_LIMIT {
                entries.pop_front();
            }
            entries.push_back(value);
        }
        self.changed.notify_waiters();
    }

    /// Every message published to `topic`, in order (the last [`PUBLISH_LOG_LIMIT`]).
    pub fn published(&self, topic: &str) -> Vec<serde_json::Value> {
        self.topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
            .map(|entries| entries.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Waits until at least `n` messages were published to `topic`; `None` on timeout.
    pub async fn wait_for(
        &self,
        topic: &str,
        n: usize,
        timeout: Duration,
    ) -> Option<Vec<serde_json::Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Enabled before the check so a publish in between is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let current = self.published(topic);
            if current.len() >= n {
                return Some(current);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let current = self.published(topic);
                return (current.len() >= n).then_some(current);
            }
        }
    }
}
