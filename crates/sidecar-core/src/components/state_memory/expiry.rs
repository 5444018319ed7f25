//! The index of the store's expiring keys: `(expires_at, hash of the key)` in a binary min-heap,
//! 16 bytes per entry in one allocation.
//!
//! Why not an ordered set: a B-tree allocates a node per few keys, and the store's expiring keys
//! (the emails' records) live for weeks. Blocks that small and that long-lived, allocated while
//! requests and deliveries allocate and free blocks of the same size by the thousand, each keep
//! the page they landed on resident long after the traffic around them is gone. One vector
//! grows by doubling into the allocator's large objects, which go back to the OS whole.
//!
//! A heap cannot remove an entry from its middle, so an entry a key no longer matches (the key
//! was rewritten with another expiry, or deleted) stays until it comes up, and is then skipped:
//! the store looks the hash up and finds no key that expired. Those entries are counted, and
//! once they are more than the live ones the heap is rebuilt from the table, so a key rewritten
//! with a new expiry over and over cannot grow the index.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Below this many stale entries a rebuild is not worth a walk of the table.
const REBUILD_FROM: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct ExpiryIndex {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    /// Entries that match no key any more, as far as the store told: a bound for the rebuild,
    /// not an exact count (two keys with one hash and one expiry share an entry's fate).
    stale: usize,
}

impl ExpiryIndex {
    /// Indexes a key of hash `hash` that expires at `at`.
    pub(super) fn insert(&mut self, at: u64, hash: u64) {
        self.heap.push(Reverse((at, hash)));
    }

    /// Notes that an entry no longer matches its key (the key got another expiry, or none).
    pub(super) fn forget_one(&mut self) {
        self.stale += 1;
    }

    /// The soonest entry.
    pub(super) fn first(&self) -> Option<(u64, u64)> {
        self.heap.peek().map(|Reverse(entry)| *entry)
    }

    /// Drops the soonest entry; `matched` says whether it still had a key.
    pub(super) fn pop_first(&mut self, matched: bool) {
        if self.heap.pop().is_some() && !matched {
            self.stale = self.stale.saturating_sub(1);
        }
    }

    /// Whether stale entries outnumber the live ones enough to rebuild.
    pub(super) fn wants_rebuild(&self) -> bool {
        self.stale >= REBUILD_FROM && self.stale * 2 > self.heap.len()
    }

    /// Replaces the entries with `live` (every expiring key's), in a vector sized to them.
    pub(super) fn rebuild(&mut self, live: impl Iterator<Item = (u64, u64)>) {
        let mut entries: Vec<Reverse<(u64, u64)>> = live.map(Reverse).collect();
        entries.shrink_to_fit();
        self.heap = BinaryHeap::from(entries);
        self.stale = 0;
    }

    /// Entries held, stale ones included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Gives back the vector's room when a quarter or less of it is used (after the keys of a
    /// burst expired): like the table, a vector never shrinks by itself.
    pub(super) fn shrink_if_sparse(&mut self) {
        if self.heap.capacity() > REBUILD_FROM && self.heap.capacity() / 4 > self.heap.len() {
            self.heap.shrink_to(self.heap.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_soonest_first_and_stale_ones_trigger_a_rebuild() {
        let mut index = ExpiryIndex::default();
        for (at, hash) in [(30, 1), (10, 2), (20, 3)] {
            index.insert(at, hash);
        }
        assert_eq!(index.first(), Some((10, 2)));
        index.pop_first(true);
        assert_eq!(index.first(), Some((20, 3)));

        for _ in 0..REBUILD_FROM {
            index.insert(99, 7);
            index.forget_one();
        }
        assert!(index.wants_rebuild());
        index.rebuild([(20, 3), (30, 1)].into_iter());
        assert!(!index.wants_rebuild());
        assert_eq!(index.len(), 2);
        assert_eq!(index.first(), Some((20, 3)));
    }

    #[test]
    fn a_stale_entry_that_comes_up_is_no_longer_counted() {
        let mut index = ExpiryIndex::default();
        index.insert(5, 1);
        index.forget_one();
        index.pop_first(false);
        assert_eq!(index.stale, 0);
        assert_eq!(index.first(), None);
    }
}
