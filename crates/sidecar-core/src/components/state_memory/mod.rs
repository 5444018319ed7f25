//! `state.in-memory`, with the ETag, first-write and TTL semantics of `state.redis`.
//!
//! Production uses Redis, so the local store copies Redis rather than Dapr's own in-memory store:
//! * ETags are decimal integer strings, `"1"` on the first write and +1 per write.
//! * A write happens when the key is absent, when the given etag equals the stored version, or when
//!   no etag is given (`"0"`) and the key has never been written with `first-write`.
//!   So a save **with** an etag on an absent key creates it.
//! * A non-integer etag on save is `EtagInvalid` (surrounding spaces are ignored, negative numbers
//!   are integers that match nothing); delete compares strings and never parses.
//! * Delete succeeds on an absent key whatever the etag, and etag `"0"` means "no etag".
//! * TTL: `> 0` expires, `<= 0` persists, no TTL leaves an earlier expiry in force. Expired keys
//!   read as absent, and are evicted from memory like Redis evicts them: a few on every write,
//!   and the rest by a background sweeper ([`DEFAULT_SWEEP_INTERVAL`]) that takes them soonest
//!   expiry first, at most `SWEEP_BATCH` (512) per hold of the lock. The sweeper starts with the
//!   first write and ends when the store is dropped.
//! * Transactions apply every operation and report the first failure, without rollback (Redis
//!   `MULTI`/`EXEC` semantics), except that a non-integer etag anywhere rejects the whole
//!   transaction before anything is applied (daprd checks etags while building the `MULTI`).
//!   Upserts in a transaction never set the first-write marker (daprd's transactional upsert
//!   does not pass it to the script).
//!
//! Memory: a key is one table slot and a run of bytes in the store's own chunks ([`arena`]) with
//! its text (app prefix and UUIDs encoded short, [`keys`]), version, expiry and value
//! ([`slot`]); the expiry index holds 16 bytes per expiring key in one vector ([`expiry`]). Values are held
//! zstd-compressed when that saves at least an eighth, with a dictionary trained from the
//! store's first values ([`value`]). The compression runs before the store's lock is taken and
//! the decompression after it is released, so neither holds up other requests.

use super::{DeleteRequest, SetRequest, StateError, StateItem, StateStore, TransactionOp};
use crate::resources::{ComponentSpec, ResourceError};
use entries::{EVICT_PER_WRITE, Entries, lock_entries, sweep};
use futures::future::BoxFuture;
use slot::Meta;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use value::{Codec, Encoded};

mod arena;
mod entries;
mod expiry;
mod keys;
mod slot;
mod usage;
mod value;

pub use entries::DEFAULT_SWEEP_INTERVAL;

/// In-memory state store with Redis semantics.
#[derive(Debug)]
pub struct InMemoryStateStore {
    entries: Arc<Mutex<Entries>>,
    codec: Codec,
    /// Component-level `ttlInSeconds`, used when a request carries none.
    default_ttl: Option<i64>,
    sweep_interval: Duration,
    sweeper_started: AtomicBool,
}

impl Default for InMemoryStateStore {
    fn default() -> Self {
        Self::new(None)
    }
}

impl InMemoryStateStore {
    pub fn new(default_ttl: Option<i64>) -> Self {
        Self {
            entries: Arc::new(Mutex::new(Entries::default())),
            codec: Codec::default(),
            default_ttl,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            sweeper_started: AtomicBool::new(false),
        }
    }

    /// The store of component `spec`, with its `ttlInSeconds` metadata as the default TTL.
    pub fn from_spec(spec: &ComponentSpec) -> Result<Self, ResourceError> {
        let ttl = match spec.meta("ttlInSeconds") {
            None | Some("") => None,
            Some(v) => Some(v.parse::<i64>().map_err(|e| ResourceError::Field {
                file: spec.source.clone(),
                kind: "Component".into(),
                name: spec.name.clone(),
                field: "spec.metadata.ttlInSeconds".into(),
                message: e.to_string(),
            })?),
        };
        Ok(Self::new(ttl))
    }

    /// How often the background sweeper looks for expired keys.
    pub fn with_sweep_interval(mut self, every: Duration) -> Self {
        self.sweep_interval = every;
        self
    }

    /// Makes the value dictionary after `values` values instead of
    /// [`value::SAMPLE_VALUES`] (0: never).
    pub fn with_dictionary_after(mut self, values: usize) -> Self {
        self.codec = Codec::new(values);
        self
    }

    /// Keys held in memory, expired ones not yet evicted included.
    pub fn len_including_expired(&self) -> usize {
        self.lock().len()
    }

    /// Bytes of keys and values (as held: encoded, compressed or not) in memory, expired keys not
    /// yet evicted included; the map's own slots and the allocator's overhead come on top.
    pub fn held_bytes(&self) -> usize {
        let entries = self.lock();
        entries.iter().map(|slot| slot.held()).sum()
    }

    /// Bytes of the memory the keys and values are held in, the space that overwrites and
    /// deletes freed and compaction has not yet given back included.
    pub fn reserved_bytes(&self) -> usize {
        self.lock().reserved_bytes()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        lock_entries(&self.entries)
    }

    /// Starts the sweeper on the current Tokio runtime, once; outside a runtime the next write
    /// tries again.
    fn ensure_sweeper(&self) {
        if self.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(sweep(Arc::downgrade(&self.entries), self.sweep_interval));
            }
            Err(_) => self.sweeper_started.store(false, Ordering::Release),
        }
    }

    /// The version a save expects: 0 for none (no etag, or last-write), else the etag.
    fn expected_version(req: &SetRequest) -> Result<i64, StateError> {
        match (&req.etag, req.concurrency) {
            (_, super::Concurrency::LastWrite) | (None, _) => Ok(0),
            (Some(etag), _) => etag
                .trim()
                .parse::<i64>()
                .map_err(|e| StateError::EtagInvalid(format!("{etag}: {e}"))),
        }
    }

    /// `mark_first_write`: whether a first-write save leaves the marker (not in transactions).
    /// `value` is `req.value` as it is to be held.
    fn apply_set(
        map: &mut Entries,
        req: &SetRequest,
        value: &Encoded,
        default_ttl: Option<i64>,
        now: Instant,
        mark_first_write: bool,
    ) -> Result<(), StateError> {
        let expected = Self::expected_version(req)?;
        let now_ms = map.millis(now);
        let current = map
            .get(&req.key)
            .map(|slot| slot.meta())
            .filter(|e| e.live(now_ms));
        let allowed = match current {
            None => true,
            Some(e) => {
                i64::try_from(e.version) == Ok(expected) || (expected == 0 && !e.first_write)
            }
        };
        if !allowed {
            let msg = format!("failed to set key {}", req.key);
            return Err(if req.etag.is_some() {
                StateError::EtagMismatch(msg)
            } else {
                StateError::Store(msg)
            });
        }
        let previous = current.map(|e| (e.version, e.first_write, e.expires_at));
        let first_write = (mark_first_write && req.concurrency == super::Concurrency::FirstWrite)
            || previous.is_some_and(|(_, marked, _)| marked);
        let ttl = req.ttl_seconds.or(default_ttl);
        let expires_at = match ttl {
            // A TTL too large to represent never expires.
            Some(n) if n > 0 => n
                .unsigned_abs()
                .checked_mul(1000)
                .and_then(|ms| now_ms.checked_add(ms)),
            Some(_) => None,
            None => previous.and_then(|(_, _, at)| at),
        };
        map.insert(
            &req.key,
            Meta {
                version: previous.map_or(1, |(version, _, _)| version + 1),
                first_write,
                expires_at,
            },
            value,
        );
        Ok(())
    }

    fn apply_delete(
        map: &mut Entries,
        req: &DeleteRequest,
        now: Instant,
    ) -> Result<(), StateError> {
        let now_ms = map.millis(now);
        let Some(current) = map
            .get(&req.key)
            .map(|slot| slot.meta())
            .filter(|e| e.live(now_ms))
        else {
            map.remove(&req.key);
            return Ok(());
        };
        let matches = match req.etag.as_deref() {
            None | Some("0") => true,
            Some(etag) => etag == current.version.to_string(),
        };
        if !matches {
            return Err(StateError::EtagMismatch(format!(
                "failed to delete {}",
                req.key
            )));
        }
        map.remove(&req.key);
        Ok(())
    }
}

/// A transaction's operation with its value already in the form it is held in.
enum Prepared<'a> {
    Set(&'a SetRequest, Encoded),
    Delete(&'a DeleteRequest),
}

impl StateStore for InMemoryStateStore {
    fn features(&self) -> Vec<String> {
        ["ETAG", "TRANSACTIONAL", "TTL"].map(String::from).to_vec()
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<StateItem>, StateError>> {
        let found = {
            let entries = self.lock();
            let now_ms = entries.millis(Instant::now());
            entries.get(key).and_then(|slot| {
                let meta = slot.meta();
                meta.live(now_ms).then(|| (slot.value(), meta.version))
            })
        };
        let item = match found {
            None => Ok(None),
            Some((data, version)) => match self.codec.decode(data) {
                Some(data) => Ok(Some(StateItem {
                    data,
                    etag: Some(version.to_string()),
                    metadata: BTreeMap::new(),
                })),
                None => Err(StateError::Store(format!(
                    "the stored value of key {key} does not decompress"
                ))),
            },
        };
        Box::pin(async move { item })
    }

    fn set(&self, req: SetRequest) -> BoxFuture<'_, Result<(), StateError>> {
        self.ensure_sweeper();
        let value = self.codec.encode(&req.key, &req.value);
        let now = Instant::now();
        let mut entries = self.lock();
        entries.evict_expired(now, EVICT_PER_WRITE);
        let result = Self::apply_set(&mut entries, &req, &value, self.default_ttl, now, true);
        drop(entries);
        Box::pin(async move { result })
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<'_, Result<(), StateError>> {
        let result = Self::apply_delete(&mut self.lock(), &req, Instant::now());
        Box::pin(async move { result })
    }

    fn transact(&self, ops: Vec<TransactionOp>) -> BoxFuture<'_, Result<(), StateError>> {
        // Etags are checked while the MULTI is built: one bad etag and nothing is sent.
        for op in &ops {
            if let TransactionOp::Set(req) = op
                && let Err(e) = Self::expected_version(req)
            {
                return Box::pin(async move { Err(e) });
            }
        }
        self.ensure_sweeper();
        // Compressed before the lock is taken.
        let prepared: Vec<Prepared<'_>> = ops
            .iter()
            .map(|op| match op {
                TransactionOp::Set(req) => {
                    Prepared::Set(req, self.codec.encode(&req.key, &req.value))
                }
                TransactionOp::Delete(req) => Prepared::Delete(req),
            })
            .collect();
        let now = Instant::now();
        let mut map = self.lock();
        map.evict_expired(now, EVICT_PER_WRITE);
        let mut first_error = None;
        for op in prepared {
            let r = match op {
                Prepared::Set(req, value) => {
                    Self::apply_set(&mut map, req, &value, self.default_ttl, now, false)
                }
                Prepared::Delete(req) => Self::apply_delete(&mut map, req, now),
            };
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        drop(map);
        Box::pin(async move { first_error.map_or(Ok(()), Err) })
    }

    fn keys(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
        let mut keys: Vec<String> = {
            let entries = self.lock();
            let now_ms = entries.millis(Instant::now());
            entries
                .iter()
                .filter(|slot| slot.meta().live(now_ms))
                .map(|slot| entries.key_of(slot))
                .collect()
        };
        keys.sort();
        Box::pin(async move { Ok(keys) })
    }

    /// Walks every key under the lock: meant for a look after a run, not for frequent scrapes.
    fn usage(&self, prefix: Option<&str>) -> Option<Vec<super::KeyFamily>> {
        Some(usage::by_family(&self.lock(), prefix, Instant::now()))
    }

    fn reserved_bytes(&self) -> Option<u64> {
        Some(InMemoryStateStore::reserved_bytes(self) as u64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::components::Concurrency;
    use bytes::Bytes;

    fn set(key: &str, etag: Option<&str>, c: Concurrency, ttl: Option<i64>) -> SetRequest {
        SetRequest {
            key: key.into(),
            value: Bytes::from_static(b"1"),
            etag: etag.map(String::from),
            concurrency: c,
            ttl_seconds: ttl,
        }
    }

    #[tokio::test]
    async fn last_write_ignores_the_etag_and_huge_ttls_never_expire() {
        let s = InMemoryStateStore::new(None);
        s.set(set("k", None, Concurrency::Unspecified, Some(i64::MAX)))
            .await
            .unwrap();
        assert!(s.get("k").await.unwrap().is_some());
        s.set(set("k", Some("77"), Concurrency::LastWrite, None))
            .await
            .unwrap();
        assert_eq!(
            s.get("k").await.unwrap().unwrap().etag.as_deref(),
            Some("2")
        );
    }

    #[tokio::test]
    async fn transactions_apply_the_other_operations_and_report_the_failure() {
        let s = InMemoryStateStore::new(None);
        let ops = vec![
            TransactionOp::Set(set("a", None, Concurrency::Unspecified, None)),
            TransactionOp::Set(set("b", Some("5"), Concurrency::Unspecified, None)),
            TransactionOp::Set(set("b", None, Concurrency::Unspecified, None)),
        ];
        s.set(set("b", None, Concurrency::Unspecified, None))
            .await
            .unwrap();
        let err = s.transact(ops).await.unwrap_err();
        assert!(matches!(err, StateError::EtagMismatch(_)), "{err:?}");
        assert!(
            s.get("a").await.unwrap().is_some(),
            "no rollback, like Redis"
        );
        assert_eq!(
            s.get("b").await.unwrap().unwrap().etag.as_deref(),
            Some("2"),
            "the operation after the failed one applied too"
        );
    }

    #[tokio::test]
    async fn a_non_integer_etag_rejects_the_whole_transaction() {
        let s = InMemoryStateStore::new(None);
        let ops = vec![
            TransactionOp::Set(set("a", None, Concurrency::Unspecified, None)),
            TransactionOp::Set(set("b", Some("x"), Concurrency::Unspecified, None)),
        ];
        let err = s.transact(ops).await.unwrap_err();
        assert!(matches!(err, StateError::EtagInvalid(_)));
        assert!(s.keys().await.unwrap().is_empty(), "nothing applied");
    }

    #[tokio::test]
    async fn transactional_first_write_leaves_no_marker_and_delete_etag_zero_means_none() {
        let s = InMemoryStateStore::new(None);
        let first_write = set("k", None, Concurrency::FirstWrite, None);
        s.transact(vec![TransactionOp::Set(first_write)])
            .await
            .unwrap();
        // Without the marker a save without etag may overwrite.
        s.set(set("k", None, Concurrency::Unspecified, None))
            .await
            .unwrap();
        // A plain first-write save does leave it.
        s.set(set("m", None, Concurrency::FirstWrite, None))
            .await
            .unwrap();
        assert!(
            s.set(set("m", None, Concurrency::Unspecified, None))
                .await
                .is_err()
        );
        let delete = |etag: &str| DeleteRequest {
            key: "k".into(),
            etag: Some(etag.into()),
            concurrency: Concurrency::Unspecified,
        };
        assert!(s.delete(delete("9")).await.is_err());
        s.delete(delete("0")).await.unwrap();
        assert!(s.get("k").await.unwrap().is_none());
        s.set(set("n", None, Concurrency::Unspecified, None))
            .await
            .unwrap();
        s.set(set("n", Some(" 1"), Concurrency::Unspecified, None))
            .await
            .unwrap();
        assert!(matches!(
            s.set(set("n", Some("-1"), Concurrency::Unspecified, None))
                .await,
            Err(StateError::EtagMismatch(_))
        ));
    }

    #[tokio::test]
    async fn component_ttl_applies_when_the_request_has_none_and_minus_one_persists() {
        let s = InMemoryStateStore::new(Some(3600));
        s.set(set("k", None, Concurrency::Unspecified, None))
            .await
            .unwrap();
        assert!(s.lock().get("k").unwrap().meta().expires_at.is_some());
        s.set(set("k", None, Concurrency::Unspecified, Some(-1)))
            .await
            .unwrap();
        let mut map = s.lock();
        assert!(map.get("k").unwrap().meta().expires_at.is_none());
        let later = Instant::now() + Duration::from_secs(7200);
        assert_eq!(
            map.evict_expired(later, usize::MAX),
            0,
            "the old expiry is void"
        );
        assert!(map.get("k").is_some());
    }

    #[tokio::test]
    async fn stale_expiries_passed_by_a_write_are_bounded() {
        let s = InMemoryStateStore::new(None);
        for ttl in 1..=100 {
            s.set(set("lease", None, Concurrency::Unspecified, Some(ttl)))
                .await
                .unwrap();
        }
        let mut map = s.lock();
        // 99 stale entries expire before the key does; one call with a budget of 8 keys passes
        // at most 32 of them.
        let between = Instant::now() + Duration::from_millis(99_500);
        assert_eq!(map.evict_expired(between, 8), 0);
        assert_eq!(map.expiry_index_len(), 100 - 32);
        assert!(map.get("lease").is_some());
    }

    #[tokio::test]
    async fn a_key_given_a_new_ttl_over_and_over_keeps_the_expiry_index_small() {
        let s = InMemoryStateStore::new(None);
        for ttl in 1..=5_000 {
            s.set(set(
                "lease",
                None,
                Concurrency::Unspecified,
                Some(3600 + ttl),
            ))
            .await
            .unwrap();
        }
        let mut map = s.lock();
        assert_eq!(map.expiry_index_len(), 5_000, "one entry per expiry given");
        map.tidy_expiry_index();
        assert_eq!(
            map.expiry_index_len(),
            1,
            "rebuilt from the one key that expires"
        );
        let later = Instant::now() + Duration::from_secs(3600 + 4_999);
        assert_eq!(
            map.evict_expired(later, usize::MAX),
            0,
            "not yet: the last TTL holds"
        );
        let after = Instant::now() + Duration::from_secs(3600 + 5_001);
        assert_eq!(map.evict_expired(after, usize::MAX), 1);
        assert!(map.get("lease").is_none());
    }

    #[tokio::test]
    async fn usage_counts_the_live_keys_of_one_app_by_family() {
        let s = InMemoryStateStore::new(None);
        for key in [
            "audit-logger||trail:task:t1:head",
            "audit-logger||trail:task:t2:head",
            "audit-logger||trail:task:t1:0",
            "task-api||task:0190c1a2-0000-7000-8000-000000000001",
        ] {
            s.set(set(key, None, Concurrency::Unspecified, None))
                .await
                .unwrap();
        }
        s.set(set(
            "audit-logger||trail:task:t3:head",
            None,
            Concurrency::Unspecified,
            Some(1),
        ))
        .await
        .unwrap();
        {
            let mut entries = s.lock();
            let key = "audit-logger||trail:task:t3:head";
            let meta = entries.get(key).unwrap().meta();
            let value = entries.get(key).unwrap().value();
            let now = entries.millis(Instant::now());
            entries.insert(
                key,
                Meta {
                    expires_at: Some(now),
                    ..meta
                },
                &value,
            );
        }
        let usage = s.usage(Some("audit-logger")).unwrap();
        let head = usage
            .iter()
            .find(|f| f.family == "trail:task:*:head")
            .unwrap();
        // Two live heads (the expired one is not counted): the key as held (its app prefix
        // as two bytes) plus the 1-byte value.
        assert_eq!(head.keys, 2);
        assert_eq!(head.bytes, 2 * ("trail:task:t1:head".len() as u64 + 2 + 1));
        assert!(
            usage
                .iter()
                .any(|f| f.family == "trail:task:*:*" && f.keys == 1)
        );
        assert!(
            usage.iter().all(|f| !f.family.starts_with("task:")),
            "{usage:?}"
        );
        assert_eq!(
            s.usage(None).unwrap().iter().map(|f| f.keys).sum::<u64>(),
            4
        );
    }

    #[tokio::test]
    async fn expired_keys_are_evicted_without_being_read() {
        let s = InMemoryStateStore::new(None).with_sweep_interval(Duration::from_millis(50));
        for i in 0..200 {
            s.set(set(
                &format!("k{i}"),
                None,
                Concurrency::Unspecified,
                Some(1),
            ))
            .await
            .unwrap();
        }
        s.set(set("kept", None, Concurrency::Unspecified, None))
            .await
            .unwrap();
        assert_eq!(s.len_including_expired(), 201);
        tokio::time::sleep(Duration::from_millis(1600)).await;
        assert_eq!(
            s.len_including_expired(),
            1,
            "expired keys are gone from memory, not just hidden"
        );
        assert!(s.get("kept").await.unwrap().is_some());
    }
}
