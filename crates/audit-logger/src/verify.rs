//! Recomputing a trail's hash chain and naming its first broken link.

use serde::Serialize;

use crate::canonical::GENESIS_HASH;
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
    /// The entry's content no longer matches its own `hash`.
    EntryHash,
    /// The entry's `prev_hash` is not the previous entry's hash (an entry was removed, inserted,
    /// reordered, or the previous one was rewritten with a fresh hash).
    PreviousHash,
    /// The entry's `seq` is not its position.
    Sequence,
    /// The head hint counts more entries than the chunks hold: entries were removed at the end.
    Truncated,
}

/// Checks `chunks` (in order from chunk 0) against each other and the `head` hint.
pub fn verify(trail: &str, chunks: &[(u64, Chunk)], head: Option<&Head>) -> Verification {
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut index = 0u64;
    let broken =
        |index: u64, chunk: u64, e: Option<&crate::entry::Entry>, problem, expected, found| {
            Verification {
                trail: trail.to_owned(),
                valid: false,
                entries: index + 1,
                first_broken: Some(BrokenLink {
                    index,
                    chunk,
                    seq: e.map(|e| e.seq),
                    event_id: e.map(|e| e.draft.event_id.clone()),
                    problem,
                    expected,
                    found,
                }),
            }
        };
    for (chunk_no, chunk) in chunks {
        for entry in &chunk.entries {
            if entry.seq != index {
                return broken(
                    index,
                    *chunk_no,
                    Some(entry),
                    Problem::Sequence,
                    index.to_string(),
                    entry.seq.to_string(),
                );
            }
            if entry.prev_hash != expected_prev {
                return broken(
                    index,
                    *chunk_no,
                    Some(entry),
                    Problem::PreviousHash,
                    expected_prev,
                    entry.prev_hash.clone(),
                );
            }
            let computed = entry.compute_hash();
            if computed != entry.hash {
                return broken(
                    index,
                    *chunk_no,
                    Some(entry),
                    Problem::EntryHash,
                    computed,
                    entry.hash.clone(),
                );
            }
            expected_prev = entry.hash.clone();
            index += 1;
        }
    }
    // The head is written after the chunk, so it never counts more than was stored.
    if let Some(head) = head
        && head.count > index
    {
        let last_chunk = chunks.last().map_or(0, |(n, _)| *n);
        return broken(
            index,
            last_chunk,
            None,
            Problem::Truncated,
            format!("{} entries ending with {}", head.count, head.last_hash),
            format!("{index} entries"),
        );
    }
    Verification {
        trail: trail.to_owned(),
        valid: true,
        entries: index,
        first_broken: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::entry::{EntryDraft, EntryKind};

    fn draft(i: u64) -> EntryDraft {
        EntryDraft {
            kind: EntryKind::Event,
            entry_id: format!("e{i}"),
            event_id: format!("e{i}"),
            event_type: "task-updated".into(),
            topic: "task-updated".into(),
            source: "task-api".into(),
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

    fn chain(n: u64, capacity: usize) -> Vec<(u64, Chunk)> {
        let mut prev = GENESIS_HASH.to_owned();
        let mut chunks: Vec<(u64, Chunk)> = Vec::new();
        for i in 0..n {
            let e = draft(i).seal(i, &prev);
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
        let v = verify("t", &chunks, None);
        assert!(v.valid);
        assert_eq!(v.entries, 7);
    }

    #[test]
    fn an_edited_entry_is_named_by_index() {
        let mut chunks = chain(7, 3);
        chunks[1].1.entries[1].draft.detail = Some("forged".into());
        let v = verify("t", &chunks, None);
        let b = v.first_broken.unwrap();
        assert_eq!((b.index, b.chunk, b.problem), (4, 1, Problem::EntryHash));
        assert_eq!(b.event_id.as_deref(), Some("e4"));
    }

    #[test]
    fn a_rehashed_edit_breaks_the_next_link() {
        let mut chunks = chain(5, 10);
        let e = &mut chunks[0].1.entries[2];
        e.draft.detail = Some("forged".into());
        e.hash = e.compute_hash();
        let b = verify("t", &chunks, None).first_broken.unwrap();
        assert_eq!((b.index, b.problem), (3, Problem::PreviousHash));
    }

    #[test]
    fn a_removed_entry_and_a_truncated_tail_are_found() {
        let mut chunks = chain(5, 10);
        chunks[0].1.entries.remove(1);
        let b = verify("t", &chunks, None).first_broken.unwrap();
        assert_eq!((b.index, b.problem), (1, Problem::Sequence));

        let mut chunks = chain(5, 10);
        let last = chunks[0].1.entries.pop().unwrap();
        let head = Head {
            chunk: 0,
            count: 5,
            last_hash: last.hash,
        };
        let b = verify("t", &chunks, Some(&head)).first_broken.unwrap();
        assert_eq!((b.index, b.problem), (4, Problem::Truncated));
    }
}
