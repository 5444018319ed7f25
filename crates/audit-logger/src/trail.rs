//! Append-only, chunked, hash-chained trails in the Dapr state store.
//!
//! Keys of a trail `T` (e.g. `trail:task:{id}`):
//!
//! * `T:{n}` — chunk `n` (from 0): `{capacity, entries}` holding at most `capacity` entries.
//!   **Chunks are the source of truth.** A chunk is only ever written with the etag read just
//!   before (or created with first-write), so each append is one atomic compare-and-set of one
//!   key; there is no multi-key transaction whose partial failure (Redis does not roll back)
//!   could lose or duplicate an entry. A full chunk is never written again, and chunk `n + 1` is
//!   only created after chunk `n` was seen full.
//! * `T:head` — `{chunk, count, last_hash}`, a **hint** written after each append. It may lag
//!   or even go back (two replicas writing it out of order); readers start at it and walk
//!   forward through full chunks, so a stale head costs a read, never correctness. It only ever
//!   names a chunk that existed, so it is a lower bound of the tail.
//! * The entry's dedupe marker ([`crate::markers`]: one key per entry id, shared by its trails)
//!   holds `T`'s bound, written before the first append attempt to `T`. The bound is the head
//!   (or a later tail this process saw) read before it was written, so every attempt to append
//!   this entry (this delivery, a concurrent duplicate, a redelivery after a crash) writes to
//!   chunk `bound` or later: an append scans those chunks for the entry id first, and the last
//!   one (the tail) is checked and written under the same etag. So a duplicate is never
//!   appended twice, even when two deliveries race, and a crash at any point leaves either no
//!   entry (the redelivery appends it) or one (the redelivery finds it).
//! * `T:event:{entry_id}` — the marker of the layout before ([`TrailId::marker_key`]), one per
//!   trail and entry: still honoured for entries it covers, no longer written.

use dapr_http::{DaprClient, DaprError, StateEntry};
use serde::{Deserialize, Serialize};

use crate::chain_key::ChainKey;
use crate::entry::Entry;
use crate::error::Error;
use crate::locks::KeyedLocks;

/// Which trail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrailId {
    Task(String),
    User(String),
    /// The index of every dead letter, in arrival order.
    DeadLetters,
}

impl TrailId {
    /// The key prefix of the trail; also its name in API answers and log lines.
    pub fn name(&self) -> String {
        match self {
            Self::Task(id) => format!("trail:task:{id}"),
            Self::User(id) => format!("trail:user:{id}"),
            Self::DeadLetters => "trail:dead-letters".to_owned(),
        }
    }

    pub fn chunk_key(&self, chunk: u64) -> String {
        format!("{}:{chunk}", self.name())
    }

    pub fn head_key(&self) -> String {
        format!("{}:head", self.name())
    }

    /// The old-layout marker of `entry_id` in this trail (read, never written: see the module
    /// docs).
    pub fn marker_key(&self, entry_id: &str) -> String {
        format!("{}:event:{entry_id}", self.name())
    }
}

/// A stored chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Fixed when the chunk is created, so changing `TRAIL_CHUNK_SIZE` never reopens a full one.
    pub capacity: usize,
    pub entries: Vec<Entry>,
}

impl Chunk {
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }
}

/// The head hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub chunk: u64,
    pub count: u64,
    pub last_hash: String,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// The entry was added.
    New(Box<Entry>),
    /// An entry with the same `entry_id` was already in the trail.
    Duplicate { seq: u64 },
}

/// A position in a trail for paging: chunk and offset within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub chunk: u64,
    pub offset: usize,
}

impl Cursor {
    /// Parses the `{chunk}.{offset}` form used in API answers.
    pub fn parse(text: &str) -> Option<Self> {
        let (chunk, offset) = text.split_once('.')?;
        Some(Self {
            chunk: chunk.parse().ok()?,
            offset: offset.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.chunk, self.offset)
    }
}

/// One page of a trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Where the next page starts, when more entries may follow.
    pub next: Option<Cursor>,
}

/// Reads and appends trails (appending is in [`crate::append`]).
#[derive(Debug)]
pub struct TrailStore {
    pub(crate) dapr: DaprClient,
    pub(crate) store: String,
    /// Keys every entry's hash ([`crate::chain_key`]).
    pub(crate) key: ChainKey,
    pub(crate) chunk_size: usize,
    pub(crate) max_attempts: u32,
    pub(crate) locks: KeyedLocks,
    /// The last tail chunk this process appended to, per trail: a lower bound of the tail like
    /// the head, but free to read.
    pub(crate) tails: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl TrailStore {
    pub fn new(
        dapr: DaprClient,
        store: String,
        key: ChainKey,
        chunk_size: usize,
        max_attempts: u32,
    ) -> Self {
        Self {
            dapr,
            store,
            key,
            chunk_size: chunk_size.max(1),
            max_attempts: max_attempts.max(1),
            locks: KeyedLocks::new(),
            tails: std::sync::Mutex::default(),
        }
    }

    pub fn dapr(&self) -> &DaprClient {
        &self.dapr
    }

    pub fn key(&self) -> &ChainKey {
        &self.key
    }

    pub fn store_name(&self) -> &str {
        &self.store
    }

    /// The head hint, if any.
    pub async fn head(&self, trail: &TrailId) -> Result<Option<Head>, Error> {
        Ok(self.read::<Head>(&trail.head_key()).await?.map(|h| h.value))
    }

    /// A chunk, if it exists.
    pub async fn chunk(&self, trail: &TrailId, chunk: u64) -> Result<Option<Chunk>, Error> {
        Ok(self
            .read::<Chunk>(&trail.chunk_key(chunk))
            .await?
            .map(|c| c.value))
    }

    /// Up to `limit` entries from `cursor`, in trail order.
    pub async fn page(&self, trail: &TrailId, cursor: Cursor, limit: usize) -> Result<Page, Error> {
        let mut entries = Vec::new();
        let mut at = cursor;
        // The cursor's chunk first; its capacity tells how many more the page can need, and
        // those come in one bulk read rather than one read after another.
        let mut batch = 1;
        loop {
            let chunks = self.chunks(trail, at.chunk, batch).await?;
            let found = chunks.len() as u64;
            let mut capacity = 1;
            for (_, chunk) in chunks {
                capacity = chunk.capacity.max(1);
                let available = chunk.entries.len().saturating_sub(at.offset);
                let take = available.min(limit - entries.len());
                entries.extend(chunk.entries.into_iter().skip(at.offset).take(take));
                at.offset += take;
                let exhausted = at.offset >= chunk.capacity;
                if exhausted {
                    at = Cursor {
                        chunk: at.chunk + 1,
                        offset: 0,
                    };
                }
                if entries.len() >= limit {
                    // More may follow if this chunk has more, or is full (a next chunk may exist).
                    let more = exhausted || take < available;
                    return Ok(Page {
                        entries,
                        next: more.then_some(at),
                    });
                }
                if !exhausted {
                    return Ok(Page {
                        entries,
                        next: None,
                    });
                }
            }
            if found < batch {
                // The chunk after the last one read does not exist: the trail ends here.
                return Ok(Page {
                    entries,
                    next: None,
                });
            }
            batch = (limit - entries.len()).div_ceil(capacity) as u64;
        }
    }

    /// Up to `count` consecutive chunks from `from`, stopping before the first missing one
    /// (one bulk read; verification walks a long trail batch by batch).
    pub async fn chunks(
        &self,
        trail: &TrailId,
        from: u64,
        count: u64,
    ) -> Result<Vec<(u64, Chunk)>, Error> {
        // `from` may come from a client's cursor: no chunk lies past the last number there is.
        let keys: Vec<String> = (from..from.saturating_add(count))
            .map(|n| trail.chunk_key(n))
            .collect();
        let items = self
            .dapr
            .get_bulk_state::<Chunk>(&self.store, &keys)
            .await?;
        let mut chunks = Vec::new();
        for (n, item) in (from..=u64::MAX).zip(items) {
            if let Some(error) = item.error {
                return Err(Error::Corrupt {
                    key: item.key,
                    reason: error,
                });
            }
            match item.value {
                Some(chunk) => chunks.push((n, chunk)),
                None => break,
            }
        }
        Ok(chunks)
    }

    pub(crate) async fn read<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<StateEntry<T>>, Error> {
        match self.dapr.get_state::<T>(&self.store, key).await {
            Ok(v) => Ok(v),
            Err(DaprError::Decode { source, .. }) => Err(Error::Corrupt {
                key: key.to_owned(),
                reason: source.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_cursors() {
        let t = TrailId::Task("42".into());
        assert_eq!(t.chunk_key(3), "trail:task:42:3");
        assert_eq!(t.head_key(), "trail:task:42:head");
        assert_eq!(t.marker_key("e1"), "trail:task:42:event:e1");
        assert_eq!(TrailId::DeadLetters.chunk_key(0), "trail:dead-letters:0");
        let c = Cursor {
            chunk: 2,
            offset: 17,
        };
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        assert_eq!(Cursor::parse("x.1"), None);
        assert_eq!(Cursor::parse("3"), None);
    }
}
