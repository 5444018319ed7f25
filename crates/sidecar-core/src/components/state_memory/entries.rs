//! The stored keys of `state.in-memory` with an index of their expiries, and the eviction of
//! expired keys: a few on each write, the rest by a periodic sweeper, soonest expiry first.
//!
//! Memory per key is kept to what the key needs: the table holds one [`Handle`] per key (8
//! bytes) to the key's slot in the [`Arena`], which holds the key (as [`super::keys`] encodes
//! it), its version and expiry, and its value ([`super::slot`]); the expiry index
//! ([`super::expiry`]) holds the expiry and the key's hash (16 bytes), not the key. The
//! sweeper also compacts the arena, off the requests' path. The table gives its memory back once most of its keys expired: a hash
//! table never shrinks by itself, so a burst of short-lived keys (claims of a backlog) would
//! otherwise keep its peak size for good.

use super::arena::{Arena, Handle};
use super::expiry::ExpiryIndex;
use super::keys::KeyCodec;
use super::slot::{Meta, Slot};
use super::value::Encoded;
use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, Weak};
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
/// Most live bytes one compaction pass moves while holding the lock (about a millisecond's
/// copying, plus one walk of the table to find the slots to move).
pub(super) const COMPACT_BATCH: usize = 1024 * 1024;
/// Compaction passes per sweep while the store is being written: each walks the whole table
/// under the lock, and a busy store makes new free space as fast as passes remove it, so it
/// waits; once writes pause the sweeper compacts until nothing is worth moving.
const BUSY_COMPACT_PASSES: usize = 2;

/// The keys, and the expiring ones ordered by expiry.
#[derive(Debug)]
pub(super) struct Entries {
    table: HashTable<Handle>,
    arena: Arena,
    hasher: RandomState,
    keys: KeyCodec,
    /// Writes since the sweeper last looked: whether the store is busy.
    writes: u64,
    /// `(expires_at, hash of the key)` of every key that expires.
    expiries: ExpiryIndex,
    /// Expiries are milliseconds since this instant.
    epoch: Instant,
}

impl Default for Entries {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
            arena: Arena::default(),
            hasher: RandomState::new(),
            keys: KeyCodec::default(),
            writes: 0,
            expiries: ExpiryIndex::default(),
            epoch: Instant::now(),
        }
    }
}

impl Entries {
    /// `at` as milliseconds since the epoch (an instant before it counts as the epoch).
    pub(super) fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(super) fn get(&self, key: &str) -> Option<Slot<'_>> {
        let key = self.keys.encode_known(key);
        let hash = self.hash(&key);
        let arena = &self.arena;
        self.table
            .find(hash, |h| Slot::at(arena.get(*h)).key_bytes() == key)
            .map(|h| Slot::at(arena.get(*h)))
    }

    /// The text of a slot's key.
    pub(super) fn key_of(&self, slot: Slot<'_>) -> String {
        self.keys.decode(slot.key_bytes())
    }

    /// Holds `value` under `key` with `meta`, in place of what the key held.
    pub(super) fn insert(&mut self, key: &str, meta: Meta, value: &Encoded) {
        self.writes += 1;
        let key = self.keys.encode(key);
        let hash = self.hash(&key);
        let arena = &mut self.arena;
        let slot = arena.alloc(Slot::encoded_len(&key, meta, value), |out| {
            Slot::write(out, &key, meta, value);
        });
        let old = match self
            .table
            .find_mut(hash, |h| Slot::at(arena.get(*h)).key_bytes() == key)
        {
            Some(held) => {
                let old = std::mem::replace(held, slot);
                let meta = Slot::at(arena.get(old)).meta();
                arena.free(old);
                Some(meta)
            }
            None => {
                let hasher = &self.hasher;
                self.table.insert_unique(hash, slot, |h| {
                    hasher.hash_one(Slot::at(arena.get(*h)).key_bytes())
                });
                None
            }
        };
        // An unchanged expiry keeps its entry; a changed one leaves the old entry stale.
        let before = old.and_then(|m| m.expires_at);
        if before != meta.expires_at {
            if before.is_some() {
                self.expiries.forget_one();
            }
            if let Some(at) = meta.expires_at {
                self.expiries.insert(at, hash);
            }
        }
    }

    pub(super) fn remove(&mut self, key: &str) {
        self.writes += 1;
        let key = self.keys.encode_known(key);
        let hash = self.hash(&key);
        let arena = &mut self.arena;
        if let Ok(found) = self
            .table
            .find_entry(hash, |h| Slot::at(arena.get(*h)).key_bytes() == key)
        {
            let (h, _) = found.remove();
            let expires = Slot::at(arena.get(h)).meta().expires_at.is_some();
            arena.free(h);
            if expires {
                self.expiries.forget_one();
            }
        }
    }

    /// Evicts up to `budget` expired keys, soonest expiry first; returns how many. Stale index
    /// entries it passes count a quarter of a key each, so a run of them cannot hold the lock
    /// for long.
    pub(super) fn evict_expired(&mut self, now: Instant, budget: usize) -> usize {
        let now = self.millis(now);
        let mut evicted = 0;
        let mut looked = 0usize;
        while evicted < budget && looked < budget.saturating_mul(4) {
            looked += 1;
            let Some((at, hash)) = self.expiries.first() else {
                break;
            };
            if at > now {
                break;
            }
            let (hasher, arena) = (&self.hasher, &mut self.arena);
            let mut matched = false;
            while let Ok(found) = self.table.find_entry(hash, |h| {
                let slot = Slot::at(arena.get(*h));
                slot.meta().expires_at.is_some_and(|t| t <= now)
                    && hasher.hash_one(slot.key_bytes()) == hash
            }) {
                let (h, _) = found.remove();
                arena.free(h);
                evicted += 1;
                matched = true;
            }
            self.expiries.pop_first(matched);
        }
        evicted
    }

    /// Rebuilds the expiry index from the table once most of its entries are stale, and gives
    /// back the index's unused room.
    pub(super) fn tidy_expiry_index(&mut self) {
        if self.expiries.wants_rebuild() {
            let (hasher, arena) = (&self.hasher, &self.arena);
            self.expiries.rebuild(self.table.iter().filter_map(|h| {
                let slot = Slot::at(arena.get(*h));
                let at = slot.meta().expires_at?;
                Some((at, hasher.hash_one(slot.key_bytes())))
            }));
        }
        self.expiries.shrink_if_sparse();
    }

    /// Gives back the table's memory when it is at least four times larger than the keys need
    /// (after a burst of short-lived keys expired): a hash table never shrinks by itself.
    pub(super) fn shrink_if_sparse(&mut self) {
        let capacity = self.table.capacity();
        if capacity > SHRINK_MIN_CAPACITY && capacity / 4 > self.table.len() {
            let (hasher, arena) = (&self.hasher, &self.arena);
            self.table.shrink_to(self.table.len() * 2, |h| {
                hasher.hash_one(Slot::at(arena.get(*h)).key_bytes())
            });
        }
    }

    /// Moves the live slots of the arena's sparsest chunks (up to `budget` bytes of them) so
    /// those chunks can be freed; returns whether that removed holes (whether another batch
    /// may). With nothing to move, an empty chunk kept for the next writes is freed too.
    pub(super) fn compact(&mut self, budget: usize) -> bool {
        let due = self.arena.sparsest(budget);
        if due.is_empty() {
            self.arena.trim();
            return false;
        }
        let holes = self.arena.holes();
        // A slot's hash is that of its key, which moving does not change: the table is only
        // walked, never rehashed.
        for h in self.table.iter_mut() {
            if Arena::is_in(*h, &due) {
                *h = self.arena.relocate(*h);
            }
        }
        // The moved slots are packed without holes, so the holes shrink with every batch; if
        // they did not (a slot of those chunks that the table lost), saying so ends the
        // sweeper's passes instead of repeating this one forever.
        self.arena.holes() < holes
    }

    /// Writes since the last call.
    pub(super) fn take_writes(&mut self) -> u64 {
        std::mem::take(&mut self.writes)
    }

    /// Bytes of the arena's chunks, free space included: what the store's slots cost the
    /// process.
    pub(super) fn reserved_bytes(&self) -> usize {
        self.arena.reserved_bytes()
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = Slot<'_>> {
        let arena = &self.arena;
        self.table.iter().map(|h| Slot::at(arena.get(*h)))
    }

    #[cfg(test)]
    pub(super) fn expiry_index_len(&self) -> usize {
        self.expiries.len()
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
        let mut busy = match entries.upgrade() {
            Some(entries) => lock_entries(&entries).take_writes() > 0,
            None => return,
        };
        let mut evicted = 0;
        loop {
            let Some(entries) = entries.upgrade() else {
                return;
            };
            let batch = {
                let mut held = lock_entries(&entries);
                let batch = held.evict_expired(Instant::now(), SWEEP_BATCH);
                evicted += batch;
                if batch < SWEEP_BATCH {
                    if evicted > 0 {
                        held.shrink_if_sparse();
                    }
                    held.tidy_expiry_index();
                }
                batch
            };
            if batch < SWEEP_BATCH {
                break;
            }
            // More to do: let requests have the lock between batches.
            tokio::task::yield_now().await;
        }
        // Then the holes that overwrites, deletes and evictions left, a batch per hold.
        // Writes that start meanwhile make the store busy too: a load that begins during a
        // long compaction at rest must not wait behind it.
        let mut passes = 0;
        loop {
            let Some(entries) = entries.upgrade() else {
                return;
            };
            let more = {
                let mut held = lock_entries(&entries);
                busy |= held.take_writes() > 0;
                !(busy && passes >= BUSY_COMPACT_PASSES) && held.compact(COMPACT_BATCH)
            };
            if !more {
                break;
            }
            passes += 1;
            tokio::task::yield_now().await;
        }
    }
}
