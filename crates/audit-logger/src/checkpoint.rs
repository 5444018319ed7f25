//! Signed checkpoints: a trail's length and last hash, MACed with the chain key and written to
//! the audit log stream (the entry sink: stdout for log shippers), i.e. outside the store.
//!
//! The keyed chain ([`crate::chain_key`]) stops anyone without the key from forging entries,
//! but the store alone cannot show that entries which were there are gone: a trail deleted
//! together with its head, or cut back with its head rewritten to an earlier (genuine) entry,
//! is a shorter chain that still verifies. A checkpoint shipped off the machine pins "trail T
//! had N entries ending in hash H at time A"; [`crate::checkpoint_check`] compares the store
//! against such checkpoints, so deletions, truncations, and even a complete rewrite of the
//! store from other (genuine or replayed) entries are reported.
//!
//! Each replica collects the trails it appended to and, every `CHECKPOINT_INTERVAL` and at
//! shutdown, signs one checkpoint per trail touched since the last round.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::canonical::canonical_json;
use crate::chain_key::{ChainKey, Domain};
use crate::entry::{Entry, timestamp};

/// One signed checkpoint, as written to the log stream (with `"log": "audit-checkpoint"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The trail's name (`trail:task:{id}`, `trail:user:{id}`, `trail:dead-letters`).
    pub trail: String,
    /// Entries the trail had.
    pub length: u64,
    /// The hash of entry `length - 1`.
    pub last_hash: String,
    /// When the checkpoint was signed.
    pub at: String,
    /// HMAC-SHA256 of the four fields above under the chain key.
    pub mac: String,
}

impl Checkpoint {
    /// Signs "`trail` had `length` entries ending with `last_hash`" at `at`.
    pub fn sign(
        key: &ChainKey,
        trail: &str,
        length: u64,
        last_hash: &str,
        at: DateTime<Utc>,
    ) -> Self {
        let mut checkpoint = Self {
            trail: trail.to_owned(),
            length,
            last_hash: last_hash.to_owned(),
            at: timestamp(at),
            mac: String::new(),
        };
        checkpoint.mac = key.mac(Domain::Checkpoint, trail, &checkpoint.signed_text());
        checkpoint
    }

    /// Whether the MAC is the chain key's for these fields.
    pub fn is_authentic(&self, key: &ChainKey) -> bool {
        key.verify(
            Domain::Checkpoint,
            &self.trail,
            &self.signed_text(),
            &self.mac,
        )
    }

    fn signed_text(&self) -> String {
        canonical_json(&json!({
            "trail": self.trail,
            "length": self.length,
            "last_hash": self.last_hash,
            "at": self.at,
        }))
    }
}

/// Trails appended to since the last round, with their furthest known end.
#[derive(Debug, Default)]
pub struct PendingCheckpoints {
    trails: Mutex<HashMap<String, (u64, String)>>,
}

impl PendingCheckpoints {
    /// Notes that `entry` was appended to `trail`.
    pub fn note(&self, trail: &str, entry: &Entry) {
        let length = entry.seq + 1;
        let mut trails = self.trails.lock().unwrap_or_else(PoisonError::into_inner);
        match trails.get_mut(trail) {
            Some(known) if known.0 >= length => {}
            Some(known) => *known = (length, entry.hash.clone()),
            None => {
                trails.insert(trail.to_owned(), (length, entry.hash.clone()));
            }
        }
    }

    /// Signs one checkpoint per trail noted since the last call, and forgets them.
    pub fn take(&self, key: &ChainKey, at: DateTime<Utc>) -> Vec<Checkpoint> {
        let drained: Vec<(String, (u64, String))> = self
            .trails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        let mut checkpoints: Vec<Checkpoint> = drained
            .into_iter()
            .map(|(trail, (length, hash))| Checkpoint::sign(key, &trail, length, &hash, at))
            .collect();
        checkpoints.sort_by(|a, b| a.trail.cmp(&b.trail));
        checkpoints
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::canonical::GENESIS_HASH;
    use crate::entry::{EntryDraft, EntryKind};
    use secrecy::SecretString;

    fn key(text: &str) -> ChainKey {
        ChainKey::new(&SecretString::from(text.to_owned())).unwrap()
    }

    fn entry(key: &ChainKey, seq: u64) -> Entry {
        EntryDraft {
            kind: EntryKind::Event,
            entry_id: format!("e{seq}"),
            event_id: format!("e{seq}"),
            event_type: "task-created".into(),
            topic: "task-created".into(),
            source: "task-api".into(),
            task_id: Some("t".into()),
            user_id: None,
            task_version: None,
            occurred_at: None,
            recorded_at: "now".into(),
            correlation_id: None,
            causation_id: None,
            detail: None,
            source_mismatch: None,
            trace_id: None,
            payload: "{}".into(),
        }
        .seal(key, "trail:task:t", seq, GENESIS_HASH)
    }

    #[test]
    fn a_checkpoint_is_authentic_only_unchanged_and_under_its_key() {
        let k = key("unit-test-chain-key-0123456789abcdef");
        let c = Checkpoint::sign(&k, "trail:task:t", 3, "ab", Utc::now());
        assert!(c.is_authentic(&k));
        let mut shorter = c.clone();
        shorter.length = 2;
        assert!(!shorter.is_authentic(&k));
        let mut moved = c.clone();
        moved.trail = "trail:task:u".into();
        assert!(!moved.is_authentic(&k));
        assert!(!c.is_authentic(&key("another-key-0123456789abcdef01234")));
    }

    #[test]
    fn pending_trails_give_one_checkpoint_each_at_their_furthest_end() {
        let k = key("unit-test-chain-key-0123456789abcdef");
        let pending = PendingCheckpoints::default();
        let (e0, e1) = (entry(&k, 0), entry(&k, 1));
        pending.note("trail:task:t", &e1);
        pending.note("trail:task:t", &e0);
        pending.note("trail:user:u", &e0);
        let taken = pending.take(&k, Utc::now());
        assert_eq!(taken.len(), 2);
        assert_eq!(
            (taken[0].trail.as_str(), taken[0].length),
            ("trail:task:t", 2)
        );
        assert_eq!(taken[0].last_hash, e1.hash);
        assert!(pending.take(&k, Utc::now()).is_empty());
    }
}
