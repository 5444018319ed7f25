//! Recomputing a trail's keyed hash chain and naming its first broken link.
//!
//! Three things are checked: every entry's keyed hash ([`crate::chain_key`]), every link to the
//! entry before, and the stored head (its count and last hash must be a point of the chain).
//! What the store alone cannot prove (a trail deleted with its head, or cut back together with
//! a head rewritten to an earlier entry) is checked against signed checkpoints
//! ([`crate::checkpoint`]) kept outside the store.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::canonical::GENESIS_HASH;
use crate::chain_key::ChainKey;
use crate::trail::{Chunk, Head};

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub trail: String,
    pub valid: bool,
    /// Entries checked (all of them when valid; up to and including the broken one otherwise).
    pub entries: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<BrokenLink>,
}

/// What is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// Position of the entry in the trail (from 0).
    pub index: u64,
    /// The chunk holding it.
    pub chunk: u64,
    /// The sequence number the entry claims.
    pub seq: Option<u64>,
    pub event_id: Option<String>,
    pub problem: Problem,
    pub expected: String,
    pub found: String,
}

/// Kinds of breakage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The entry's content no longer matches its own `hash` (edited, or rehashed without the
    /// right key).
    EntryHash,
    /// The entry carries a plain, unkeyed SHA-256 hash: written before the chain was keyed, or
    /// forged by someone without the key. Either way nothing proves who wrote it.
    Unkeyed,
    /// The entry's `prev_hash` is not the previous entry's hash (an entry was removed, inserted,
    /// reordered, or the previous one was rewritten with a fresh hash).
    PreviousHash,
    /// The entry's `seq` is not its position.
    Sequence,
    /// The head hint counts more entries than the chunks hold: entries were removed at the end.
    Truncated,
    /// The entry at the head's position does not carry the head's last hash: the tail was
    /// rewritten after the head was written.
    Head,
}

/// Checks a trail chunk by chunk (from chunk 0, in order), keeping only the last hash, so a
/// trail of any length verifies in bounded memory.
#[derive(Debug)]
pub struct ChainCheck<'k> {
    trail: String,
    key: &'k ChainKey,
    head: Option<Head>,
    expected_prev: String,
    index: u64,
    last_chunk: u64,
    /// Positions whose hash a caller wants (checkpoints), filled as the walk passes them.
    probes: BTreeMap<u64, Option<String>>,
}

impl<'k> ChainCheck<'k> {
    /// A check of `trail` under `key`, against the `head` read before the chunks.
    pub fn new(trail: &str, key: &'k ChainKey, head: Option<Head>) -> Self {
        Self {
            trail: trail.to_owned(),
            key,
            head,
            expected_prev: GENESIS_HASH.to_owned(),
            index: 0,
            last_chunk: 0,
            probes: BTreeMap::new(),
        }
    }

    /// Also records the hash of the entry at `index` (see [`Self::probed`]).
    pub fn probe(&mut self, index: u64) {
        self.probes.insert(index, None);
    }

    /// The hashes recorded at the probed positions (`None`: the walk did not get there).
    pub fn probed(&self) -> &BTreeMap<u64, Option<String>> {
        &self.probes
    }

    /// Checks the next chunk; `Some` is the verdict at the first broken link.
    pub fn feed(&mut self, chunk_no: u64, chunk: &Chunk) -> Option<Verification> {
        self.last_chunk = chunk_no;
        for entry in &chunk.entries {
            if let Some((problem, expected, found)) = self.check(entry) {
                return Some(self.broken(Some(entry), problem, expected, found));
            }
            if let Some(slot) = self.probes.get_mut(&self.index) {
                *slot = Some(entry.hash.clone());
            }
            self.expected_prev = entry.hash.clone();
            self.index += 1;
        }
        None
    }

    fn check(&self, entry: &crate::entry::Entry) -> Option<(Problem, String, String)> {
        if entry.seq != self.index {
            return Some((
                Problem::Sequence,
                self.index.to_string(),
                entry.seq.to_string(),
            ));
        }
        if entry.prev_hash != self.expected_prev {
            return Some((
                Problem::PreviousHash,
                self.expected_prev.clone(),
                entry.prev_hash.clone(),
            ));
        }
        let computed = entry.compute_hash(self.key, &self.trail);
        if computed != entry.hash {
            let problem = if entry.legacy_hash() == entry.hash {
                Problem::Unkeyed
            } else {
                Problem::EntryHash
            };
            return Some((problem, computed, entry.hash.clone()));
        }
        // The head is a hint that may lag, but whatever position it names was once the last
        // entry, whose hash never changes afterwards.
        if let Some(head) = &self.head
            && head.count == self.index + 1
            && head.last_hash != entry.hash
        {
            return Some((Problem::Head, head.last_hash.clone(), entry.hash.clone()));
        }
        None
    }

    /// The verdict once every chunk was fed, checked against the head.
    pub fn finish(self) -> Verification {
        // The head is written after the chunk, so it never counts more than was stored.
        if let Some(head) = &self.head
            && head.count > self.index
        {
            let expected = format!("{} entries ending with {}", head.count, head.last_hash);
            let found = format!("{} entries", self.index);
            return self.broken(None, Problem::Truncated, expected, found);
        }
        Verification {
            trail: self.trail,
            valid: true,
            entries: self.index,
            first_broken: None,
        }
    }

    fn broken(
        &self,
        entry: Option<&crate::entry::Entry>,
        problem: Problem,
        expected: String,
        found: String,
    ) -> Verification {
        Verification {
            trail: self.trail.clone(),
            valid: false,
            entries: self.index + 1,
            first_broken: Some(BrokenLink {
                index: self.index,
                chunk: self.last_chunk,
                seq: entry.map(|e| e.seq),
                event_id: entry.map(|e| e.draft.event_id.clone()),
                problem,
                expected,
                found,
            }),
        }
    }
}

/// Checks `chunks` (in order from chunk 0) against each other and the `head` hint.
pub fn verify(
    trail: &str,
    key: &ChainKey,
    chunks: &[(u64, Chunk)],
    head: Option<&Head>,
) -> Verification {
    let mut check = ChainCheck::new(trail, key, head.cloned());
    for (n, chunk) in chunks {
        if let Some(verdict) = check.feed(*n, chunk) {
            return verdict;
        }
    }
    check.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::entry::tests::test_draft;
    use secrecy::SecretString;

    const T: &str = "trail:task:t";

    fn key() -> ChainKey {
        ChainKey::new(&SecretString::from(
            "unit-test-chain-key-0123456789abcdef".to_owned(),
        ))
        .unwrap()
    }

    fn chain(n: u64, capacity: usize) -> Vec<(u64, Chunk)> {
        let mut prev = GENESIS_HASH.to_owned();
        let mut chunks: Vec<(u64, Chunk)> = Vec::new();
        for i in 0..n {
            let e = test_draft(i).seal(&key(), T, i, &prev);
            prev = e.hash.clone();
            match chunks.last_mut() {
                Some((_, c)) if !c.is_full() => c.entries.push(e),
                _ => chunks.push((
                    chunks.len() as u64,
                    Chunk {
                        capacity,
                        entries: vec![e],
                    },
                )),
            }
        }
        chunks
    }

    #[test]
    fn an_intact_chain_verifies_across_chunks() {
        let chunks = chain(7, 3);
        assert_eq!(chunks.len(), 3);
        let v = verify(T, &key(), &chunks, None);
        assert!(v.valid);
        assert_eq!(v.entries, 7);
    }

    #[test]
    fn an_edited_entry_is_named_by_index() {
        let mut chunks = chain(7, 3);
        chunks[1].1.entries[1].draft.detail = Some("forged".into());
        let v = verify(T, &key(), &chunks, None);
        let b = v.first_broken.unwrap();
        assert_eq!((b.index, b.chunk, b.problem), (4, 1, Problem::EntryHash));
        assert_eq!(b.event_id.as_deref(), Some("e4"));
    }

    #[test]
    fn a_rehashed_edit_breaks_the_next_link() {
        let mut chunks = chain(5, 10);
        let e = &mut chunks[0].1.entries[2];
        e.draft.detail = Some("forged".into());
        e.hash = e.compute_hash(&key(), T);
        let b = verify(T, &key(), &chunks, None).first_broken.unwrap();
        assert_eq!((b.index, b.problem), (3, Problem::PreviousHash));
    }

    #[test]
    fn a_last_entry_rehashed_without_the_key_is_found() {
        // The last entry has no successor to betray it: only the key does.
        let mut chunks = chain(5, 10);
        let e = &mut chunks[0].1.entries[4];
        e.draft.detail = Some("forged".into());
        e.hash = e.legacy_hash();
        let b = verify(T, &key(), &chunks, None).first_broken.unwrap();
        assert_eq!((b.index, b.problem), (4, Problem::Unkeyed));

        let other = ChainKey::new(&SecretString::from(
            "another-key-0123456789abcdef01234".to_owned(),
        ))
        .unwrap();
        let e = &mut chunks[0].1.entries[4];
        e.hash = e.compute_hash(&other, T);
        let b = verify(T, &key(), &chunks, None).first_broken.unwrap();
        assert_eq!((b.index, b.problem), (4, Problem::EntryHash));
    }

    #[test]
    fn a_chain_copied_into_another_trail_does_not_verify() {
        let chunks = chain(3, 10);
        let b = verify("trail:task:other", &key(), &chunks, None)
            .first_broken
            .unwrap();
        assert_eq!((b.index, b.problem), (0, Problem::EntryHash));
    }

    #[test]
    fn the_head_must_be_a_point_of_the_chain() {
        let chunks = chain(5, 10);
        let at = |i: usize| chunks[0].1.entries[i].hash.clone();
        // A lagging head is fine.
        let lagging = Head {
            chunk: 0,
            count: 3,
            last_hash: at(2),
        };
        assert!(verify(T, &key(), &chunks, Some(&lagging)).valid);
        // A head whose hash is not the chain's at its count: the tail was rewritten.
        let wrong = Head {
            chunk: 0,
            count: 5,
            last_hash: at(3),
        };
        let b = verify(T, &key(), &chunks, Some(&wrong))
            .first_broken
            .unwrap();
        assert_eq!((b.index, b.problem), (4, Problem::Head));
    }

    #[test]
    fn a_removed_entry_and_a_truncated_tail_are_found() {
        let mut chunks = chain(5, 10);
        chunks[0].1.entries.remove(1);
        let b = verify(T, &key(), &chunks, None).first_broken.unwrap();
        assert_eq!((b.index, b.problem), (1, Problem::Sequence));

        let mut chunks = chain(5, 10);
        let last = chunks[0].1.entries.pop().unwrap();
        let head = Head {
            chunk: 0,
            count: 5,
            last_hash: last.hash,
        };
        let b = verify(T, &key(), &chunks, Some(&head))
            .first_broken
            .unwrap();
        assert_eq!((b.index, b.problem), (4, Problem::Truncated));
    }
}
