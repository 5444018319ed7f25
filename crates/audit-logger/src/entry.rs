//! One trail entry: what happened, to which task and user, and the hash links that make the
//! trail tamper-evident.
//!
//! `hash` = HMAC-SHA256 under the chain key ([`crate::chain_key`]) of the trail's name and the
//! canonical JSON ([`crate::canonical`]) of the entry without its `hash` field; `prev_hash` =
//! the `hash` of the previous entry of the same trail
//! ([`GENESIS_HASH`](crate::canonical::GENESIS_HASH) for the first). Changing any field of an
//! entry breaks its own hash, and without the key no new hash can be made for it; removing or
//! reordering entries breaks the next `prev_hash`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{canonical_json, sha256_hex};
use crate::chain_key::{ChainKey, Domain};

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// An event seen on a business topic.
    Event,
    /// A subscriber gave up on an event (it arrived on a dead-letter topic).
    DeadLetter,
    /// An administrator replayed a dead letter to its original topic.
    Replay,
}

/// An entry before it is placed in a trail (no position, no hashes yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryDraft {
    pub kind: EntryKind,
    /// The deduplication key within a trail: the event id for events,
    /// `dead-letter:{app}:{event_id}` and `replay:{id}` for the others.
    pub entry_id: String,
    pub event_id: String,
    pub event_type: String,
    /// The topic the event was published on (the original topic for dead letters and replays).
    pub topic: String,
    /// The publishing app as Dapr reports it: the CloudEvent `source`, which the publisher's
    /// sidecar sets to its app id (never the envelope's own `source` field, which the body's
    /// author writes).
    pub source: String,
    /// Why the publisher is suspect, when it is: `source` is not an app allowed to publish the
    /// topic, or the envelope claims another producer. Absent (and not hashed) otherwise, so
    /// entries written before this field existed keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_mismatch: Option<String>,
    /// The W3C trace id of the delivery that brought the event (its `traceparent`), to open the
    /// event's trace from the trail. Inside the hash like every other field when present; absent
    /// (and not hashed) when the delivery had none, so entries written before this field
    /// existed keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub task_id: Option<String>,
    pub user_id: Option<String>,
    pub task_version: Option<u64>,
    /// The envelope's `timestamp` (when the producer created the event).
    pub occurred_at: Option<String>,
    /// When this service recorded it.
    pub recorded_at: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// Free text for dead letters (who dropped it, why) and replays.
    pub detail: Option<String>,
    /// The envelope's `data`, as canonical JSON text: kept as a string so the store's number
    /// re-encoding cannot alter what was hashed.
    pub payload: String,
}

/// An entry as stored in a trail chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the trail, from 0.
    pub seq: u64,
    #[serde(flatten)]
    pub draft: EntryDraft,
    pub prev_hash: String,
    pub hash: String,
}

impl EntryDraft {
    /// A draft of an event `envelope` (the CloudEvent's data) seen on `topic`; `ce_id` is the
    /// CloudEvent id, used when the envelope has no `event_id`; `ce_source` is the CloudEvent
    /// `source`, recorded as the publisher.
    pub fn from_envelope(
        topic: &str,
        ce_id: &str,
        ce_source: &str,
        envelope: &Value,
        now: DateTime<Utc>,
    ) -> Option<Self> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let event_id = text(envelope.get("event_id")).or_else(|| Some(ce_id.to_owned()))?;
        if event_id.is_empty() {
            return None;
        }
        let data = envelope.get("data").unwrap_or(&Value::Null);
        let task = data.get("task");
        let task_id =
            text(task.and_then(|t| t.get("task_id"))).or_else(|| text(data.get("task_id")));
        let user_id =
            text(task.and_then(|t| t.get("user_id"))).or_else(|| text(data.get("user_id")));
        let task_version = task
            .and_then(|t| t.get("version"))
            .or_else(|| data.get("task_version"))
            .and_then(Value::as_u64);
        Some(Self {
            kind: EntryKind::Event,
            entry_id: event_id.clone(),
            event_id,
            event_type: text(envelope.get("event_type")).unwrap_or_else(|| topic.to_owned()),
            topic: topic.to_owned(),
            source: ce_source.to_owned(),
            source_mismatch: source_mismatch(topic, ce_source, text(envelope.get("source"))),
            trace_id: None,
            task_id,
            user_id,
            task_version,
            occurred_at: text(envelope.get("timestamp")),
            recorded_at: timestamp(now),
            correlation_id: text(envelope.get("correlation_id")),
            causation_id: text(envelope.get("causation_id")),
            detail: None,
            payload: crate::canonical::canonical_json(data),
        })
    }

    /// Records the trace of the delivery that brought the event, when its `traceparent` is valid.
    pub fn traced(mut self, traceparent: Option<&str>) -> Self {
        self.trace_id = traceparent
            .and_then(dapr_http::spans::parse_traceparent)
            .map(|context| context.trace_id().to_string());
        self
    }

    /// Places the draft at `seq` of `trail`, after the entry hashed `prev_hash`.
    pub fn seal(self, key: &ChainKey, trail: &str, seq: u64, prev_hash: &str) -> Entry {
        let mut entry = Entry {
            seq,
            draft: self,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash(key, trail);
        entry
    }
}

impl Entry {
    /// The keyed hash this entry should carry in `trail`, recomputed from its other fields.
    pub fn compute_hash(&self, key: &ChainKey, trail: &str) -> String {
        key.mac(Domain::Entry, trail, &canonical_json(&self.unhashed()))
    }

    /// The unkeyed SHA-256 form entries had before the chain was keyed: verification uses it
    /// only to tell such an entry (or a forgery made without the key) from an edited one.
    pub fn legacy_hash(&self) -> String {
        sha256_hex(&self.unhashed())
    }

    /// The entry as hashed: every field but `hash`.
    fn unhashed(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.remove("hash");
        }
        value
    }
}

/// What is wrong with the publisher of an event on `topic`, if anything. The CloudEvent
/// `source` must be an app allowed to publish the topic (`events::Topic::publishers`); the
/// envelope's `source` must name the same app, or the topic's producer when the audit-logger
/// replayed it. Unknown topics are judged by the envelope claim alone.
fn source_mismatch(topic: &str, ce_source: &str, claimed: Option<String>) -> Option<String> {
    let topic_rules = topic.parse::<events::Topic>().ok();
    let mut problems = Vec::new();
    if let Some(t) = topic_rules
        && !t.accepts_publisher(ce_source)
    {
        problems.push(format!(
            "published by `{ce_source}`, but only {} may publish {t}",
            t.publishers().join(", ")
        ));
    }
    if let Some(claimed) = claimed.filter(|c| c != ce_source) {
        let replayed =
            ce_source == events::REPLAYER && topic_rules.is_some_and(|t| t.producer() == claimed);
        if !replayed {
            problems.push(format!("the envelope claims source `{claimed}`"));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// RFC 3339 UTC with microseconds, the form the envelopes use.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use crate::canonical::GENESIS_HASH;
    use secrecy::SecretString;
    use serde_json::json;

    pub(crate) fn test_key() -> ChainKey {
        ChainKey::new(&SecretString::from(
            "unit-test-chain-key-0123456789abcdef".to_owned(),
        ))
        .unwrap()
    }

    /// An event entry `e{i}` of task `t` and user `u`, for tests that build trails.
    pub(crate) fn test_draft(i: u64) -> EntryDraft {
        EntryDraft {
            kind: EntryKind::Event,
            entry_id: format!("e{i}"),
            event_id: format!("e{i}"),
            event_type: "task-updated".into(),
            topic: "task-updated".into(),
            source: "task-api".into(),
            source_mismatch: None,
            trace_id: None,
            task_id: Some("t".into()),
            user_id: Some("u".into()),
            task_version: Some(i + 1),
            occurred_at: None,
            recorded_at: "2026-01-01T00:00:00.000000Z".into(),
            correlation_id: None,
            causation_id: None,
            detail: None,
            payload: "{}".into(),
        }
    }

    fn envelope() -> Value {
        json!({
            "event_id": "0190c1a2-0000-7000-8000-000000000001",
            "event_type": "task-updated",
            "schema_version": 1,
            "timestamp": "2026-01-02T03:04:05.123456Z",
            "correlation_id": "req-1",
            "causation_id": null,
            "source": "task-api",
            "data": {"task": {"task_id": "t1", "user_id": "u1", "version": 3, "title": "x"},
                     "changed_fields": ["title"]}
        })
    }

    #[test]
    fn a_draft_takes_ids_and_version_from_the_envelope() {
        let d =
            EntryDraft::from_envelope("task-updated", "ce", "task-api", &envelope(), Utc::now())
                .unwrap();
        assert_eq!(d.event_id, "0190c1a2-0000-7000-8000-000000000001");
        assert_eq!(d.entry_id, d.event_id);
        assert_eq!(d.task_id.as_deref(), Some("t1"));
        assert_eq!(d.user_id.as_deref(), Some("u1"));
        assert_eq!(d.task_version, Some(3));
        assert_eq!(
            d.occurred_at.as_deref(),
            Some("2026-01-02T03:04:05.123456Z")
        );
        assert!(d.payload.starts_with(r#"{"changed_fields":["title"]"#));
    }

    #[test]
    fn the_publisher_is_the_cloud_event_source_and_a_mismatch_is_marked() {
        let honest =
            EntryDraft::from_envelope("task-updated", "ce", "task-api", &envelope(), Utc::now())
                .unwrap();
        assert_eq!(honest.source, "task-api");
        assert_eq!(honest.source_mismatch, None);

        // reminder-scheduler's sidecar published a task-updated claiming to be task-api.
        let forged = EntryDraft::from_envelope(
            "task-updated",
            "ce",
            "reminder-scheduler",
            &envelope(),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(forged.source, "reminder-scheduler");
        let why = forged.source_mismatch.unwrap();
        assert!(
            why.contains("only task-api, audit-logger may publish task-updated")
                && why.contains("the envelope claims source `task-api`"),
            "{why}"
        );

        // A replay comes from the audit-logger on behalf of the producer: not a mismatch.
        let replayed = EntryDraft::from_envelope(
            "task-updated",
            "ce",
            "audit-logger",
            &envelope(),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(replayed.source_mismatch, None);

        // No CloudEvent source at all (a raw payload): nothing vouches for the publisher.
        let raw =
            EntryDraft::from_envelope("task-updated", "", "", &envelope(), Utc::now()).unwrap();
        assert!(raw.source_mismatch.unwrap().contains("published by ``"));
    }

    #[test]
    fn due_soon_shape_is_understood() {
        let env = json!({"event_id": "e", "event_type": "task-due-soon",
            "data": {"task_id": "t9", "user_id": "u9", "task_version": 4}});
        let d = EntryDraft::from_envelope("task-due-soon", "", "", &env, Utc::now()).unwrap();
        assert_eq!(
            (d.task_id.as_deref(), d.user_id.as_deref()),
            (Some("t9"), Some("u9"))
        );
        assert_eq!(d.task_version, Some(4));
    }

    #[test]
    fn sealed_hash_survives_a_store_round_trip_and_detects_changes() {
        let d =
            EntryDraft::from_envelope("task-updated", "ce", "task-api", &envelope(), Utc::now())
                .unwrap();
        let key = test_key();
        let e = d.seal(&key, "trail:task:t1", 0, GENESIS_HASH);
        assert_eq!(e.hash.len(), 64);
        // The store re-encodes with other key orders; the hash is over the canonical form.
        let text = serde_json::to_string(&serde_json::to_value(&e).unwrap()).unwrap();
        let back: Entry = serde_json::from_str(&text).unwrap();
        assert_eq!(back.compute_hash(&key, "trail:task:t1"), e.hash);
        let mut altered = back.clone();
        altered.draft.detail = Some("edited".into());
        assert_ne!(altered.compute_hash(&key, "trail:task:t1"), e.hash);
        // Keyed: neither the plain SHA-256 nor the same entry in another trail matches.
        assert_ne!(back.legacy_hash(), e.hash);
        assert_ne!(back.compute_hash(&key, "trail:user:u1"), e.hash);
    }

    #[test]
    fn the_trace_id_is_hashed_when_present_and_absent_otherwise() {
        let now = Utc::now();
        let untraced =
            EntryDraft::from_envelope("task-updated", "ce", "task-api", &envelope(), now).unwrap();
        let key = test_key();
        let plain = untraced
            .clone()
            .seal(&key, "trail:task:t1", 0, GENESIS_HASH);
        // No trace: the field is not written, so an entry from before the field hashes alike.
        assert!(
            serde_json::to_value(&plain)
                .unwrap()
                .get("trace_id")
                .is_none()
        );
        let traced = untraced.clone().traced(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(
            traced.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let sealed = traced.seal(&key, "trail:task:t1", 0, GENESIS_HASH);
        assert_ne!(sealed.hash, plain.hash);
        // Inside the chain: rewriting the trace id breaks the entry's hash.
        let mut altered = sealed.clone();
        altered.draft.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
        assert_ne!(altered.compute_hash(&key, "trail:task:t1"), sealed.hash);
        // A malformed traceparent records nothing.
        assert_eq!(untraced.traced(Some("garbage")).trace_id, None);
    }
}
