//! In-process serialisation of appends per trail, and the backoff between attempts that
//! conflicted with another replica's.
//!
//! Correctness never depends on this (appends are etag-checked, because other replicas write the
//! same trails); it only stops deliveries handled by this replica from racing each other for the
//! same chunk, which would waste round trips on conflicts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// One async mutex per key, created on demand and removed when nobody holds or waits for it.
#[derive(Debug, Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Holds a key's lock; dropping it releases the lock and forgets an idle key.
#[derive(Debug)]
pub struct KeyGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits for the lock of `key`.
    pub async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(key.to_owned()).or_default())
        };
        let guard = mutex.lock_owned().await;
        KeyGuard {
            locks: self,
            key: key.to_owned(),
            guard: Some(guard),
        }
    }

    /// The lock of `key` if nobody holds it now.
    pub fn try_lock(&self, key: &str) -> Option<KeyGuard<'_>> {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(key.to_owned()).or_default())
        };
        // On failure `mutex` is dropped here; the holder's guard removes the entry when idle.
        let guard = mutex.try_lock_owned().ok()?;
        Some(KeyGuard {
            locks: self,
            key: key.to_owned(),
            guard: Some(guard),
        })
    }

    /// Keys currently tracked (held or awaited).
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self
            .locks
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the map holds it now: nobody waits, so the entry can go.
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// Full-jitter backoff between conflicting attempts: 1 ms doubling to at most 50 ms.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let bound = 1u64 << attempt.min(6);
    Duration::from_micros(rand::rng().random_range(0..=bound.min(50) * 1000))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_holder_per_key_and_idle_keys_are_forgotten() {
        let locks = Arc::new(KeyedLocks::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (locks, inside, max) = (locks.clone(), inside.clone(), max.clone());
            tasks.push(tokio::spawn(async move {
                let _g = locks.lock("k").await;
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn different_keys_do_not_block_each_other() {
        let locks = KeyedLocks::new();
        let _a = locks.lock("a").await;
        let b = tokio::time::timeout(std::time::Duration::from_secs(1), locks.lock("b")).await;
        assert!(b.is_ok());
        assert_eq!(locks.len(), 2);
    }

    #[test]
    fn backoff_is_bounded() {
        for attempt in 0..100 {
            assert!(backoff(attempt) <= Duration::from_millis(50));
        }
    }
}
