//! The stored keys of `state.in-memory` with an index of their expiries, and the eviction of
//! expired keys: a few on each write, the rest by a periodic sweeper, soonest expiry first.
//!
//! Memory per key is kept to what the key needs: the key text is allocated once and shared by
//! the map and the expiry index (values are held as [`StoredValue`]s), and the map gives its
//! table back once most of its keys expired: a hash map never shrinks by itself, so a burst of
//! short-lived keys (claims of a backlog) would otherwise keep its peak size for good.

use super::value::StoredValue;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How often the background sweeper evicts expired keys.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Most keys evicted per hold of the lock, so a sweep never stalls requests for long.
pub const SWEEP_BATCH: usize = 512;
/// Expired keys evicted by each write, so a store written without pause stays small even
/// between sweeps.
pub(super) const EVICT_PER_WRITE: usize = 8;
/// Below this many slots an oversized table is not worth a rehash.
const SHRINK_MIN_CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) data: StoredValue,
    pub(super) version: u64,
    pub(super) first_write: bool,
    pub(super) expires_at: Option<Instant>,
}

impl Entry {
    pub(super) fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// The keys, and the expiring ones ordered by expiry.
#[derive(Debug, Default)]
pub(super) struct Entries {
    pub(super) map: HashMap<Arc<str>, Entry>,
    /// `(expires_at, key)` of every entry that expires; the key is the map's own.
    pub(super) expiries: BTreeSet<(Instant, Arc<str>)>,
}

impl Entries {
    pub(super) fn get(&self, key: &str) -> Option<&Entry> {
        self.map.get(key)
    }

    pub(super) fn insert(&mut self, key: &str, entry: Entry) {
        let key: Arc<str> = match self.map.get_key_value(key) {
            Some((shared, old)) => {
                let shared = shared.clone();
                if let Some(at) = old.expires_at {
                    self.expiries.remove(&(at, shared.clone()));
                }
                shared
            }
            None => Arc::from(key),
        };
        if let Some(at) = entry.expires_at {
            self.expiries.insert((at, key.clone()));
        }
        self.map.insert(key, entry);
    }

    pub(super) fn remove(&mut self, key: &str) {
        if let Some((shared, old)) = self.map.remove_entry(key)
            && let Some(at) = old.expires_at
        {
            self.expiries.remove(&(at, shared));
        }
    }

    /// Evicts up to `budget` expired keys, soonest expiry first; returns how many.
    pub(super) fn evict_expired(&mut self, now: Instant, budget: usize) -> usize {
        let mut evicted = 0;
        while evicted < budget {
            let Some((at, _)) = self.expiries.first() else {
                break;
            };
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.expiries.pop_first() {
                self.map.remove(&key);
                evicted += 1;
            }
        }
        evicted
    }

    /// Gives back the table's memory when it is at least four times larger than the keys need
    /// (after a burst of short-lived keys expired): a hash map never shrinks by itself.
    pub(super) fn shrink_if_sparse(&mut self) {
        let capacity = self.map.capacity();
        if capacity > SHRINK_MIN_CAPACITY && capacity / 4 > self.map.len() {
            self.map.shrink_to(self.map.len() * 2);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

pub(super) fn lock_entries(entries: &Mutex<Entries>) -> std::sync::MutexGuard<'_, Entries> {
    // A poisoned lock only means another request panicked mid-update; the map is still usable.
    entries
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Evicts expired keys every `every` until the store is dropped.
pub(super) async fn sweep(entries: Weak<Mutex<Entries>>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut evicted = 0;
        loop {
            let Some(entries) = entries.upgrade() else {
                return;
            };
            let batch = {
                let mut held = lock_entries(&entries);
                let batch = held.evict_expired(Instant::now(), SWEEP_BATCH);
                evicted += batch;
                if batch < SWEEP_BATCH && evicted > 0 {
                    held.shrink_if_sparse();
                }
                batch
            };
            if batch < SWEEP_BATCH {
                break;
            }
            // More to do: let requests have the lock between batches.
            tokio::task::yield_now().await;
        }
    }
}
