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
//! * `T:event:{entry_id}` — the dedupe marker `{from_chunk}`, created with first-write before
//!   the first append attempt. `from_chunk` is the head read before the marker was created, so
//!   every attempt to append this entry (this delivery, a concurrent duplicate, a redelivery
//!   after a crash) writes to chunk `from_chunk` or later: an append scans those chunks for the
//!   entry id first, and the last one (the tail) is checked and written under the same etag.
//!   So a duplicate is never appended twice, even when two deliveries race, and a crash at any
//!   point leaves either no entry (the redelivery appends it) or one (the redelivery finds it).

use std::time::Duration;

use dapr_http::{DaprClient, DaprError, SaveItem, StateEntry};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::canonical::GENESIS_HASH;
use crate::entry::{Entry, EntryDraft};
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    from_chunk: u64,
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

/// Reads and appends trails.
#[derive(Debug)]
pub struct TrailStore {
    dapr: DaprClient,
    store: String,
    chunk_size: usize,
    max_attempts: u32,
    locks: KeyedLocks,
}

impl TrailStore {
    pub fn new(dapr: DaprClient, store: String, chunk_size: usize, max_attempts: u32) -> Self {
        Self {
            dapr,
            store,
            chunk_size: chunk_size.max(1),
            max_attempts: max_attempts.max(1),
            locks: KeyedLocks::new(),
        }
    }

    pub fn dapr(&self) -> &DaprClient {
        &self.dapr
    }

    pub fn store_name(&self) -> &str {
        &self.store
    }

    /// Appends `draft` to `trail` unless an entry with its `entry_id` is already there.
    pub async fn append(&self, trail: &TrailId, draft: EntryDraft) -> Result<Appended, Error> {
        let name = trail.name();
        let _local = self.locks.lock(&name).await;
        let started = std::time::Instant::now();
        let from = self.claim(trail, &draft.entry_id).await?;
        let mut chunk_no = from;
        // The last entry of the previous (full) chunk, once walked past.
        let mut previous: Option<(u64, String)> = None;
        let mut conflicts = 0u32;
        loop {
            let key = trail.chunk_key(chunk_no);
            let current: Option<StateEntry<Chunk>> = self.read(&key).await?;
            let outcome = match current {
                Some(StateEntry { value: chunk, etag }) => {
                    if let Some(e) = chunk
                        .entries
                        .iter()
                        .find(|e| e.draft.entry_id == draft.entry_id)
                    {
                        return Ok(Appended::Duplicate { seq: e.seq });
                    }
                    if chunk.is_full() {
                        previous = chunk.entries.last().map(|e| (e.seq, e.hash.clone()));
                        chunk_no += 1;
                        continue;
                    }
                    let (seq, prev_hash) = match chunk.entries.last() {
                        Some(last) => (last.seq + 1, last.hash.clone()),
                        None => self.tail_of_previous(trail, chunk_no, &previous).await?,
                    };
                    let entry = draft.clone().seal(seq, &prev_hash);
                    let mut updated = chunk;
                    updated.entries.push(entry.clone());
                    let item = SaveItem::new(&key, &updated)?.etag(etag).first_write();
                    match self.dapr.save_state(&self.store, &[item]).await {
                        Ok(()) => Ok(entry),
                        Err(e) if e.is_etag_conflict() => Err(None),
                        Err(e) => Err(Some(e)),
                    }
                }
                None => {
                    let (seq, prev_hash) =
                        self.tail_of_previous(trail, chunk_no, &previous).await?;
                    let entry = draft.clone().seal(seq, &prev_hash);
                    let chunk = Chunk {
                        capacity: self.chunk_size,
                        entries: vec![entry.clone()],
                    };
                    // Create-if-absent: first-write without an etag fails if another writer
                    // created the chunk first. That failure is not typed as a conflict by the
                    // store, so it is told apart by reading the chunk again.
                    let item = SaveItem::new(&key, &chunk)?.first_write();
                    match self.dapr.save_state(&self.store, &[item]).await {
                        Ok(()) => Ok(entry),
                        Err(e) => match self.read::<Chunk>(&key).await? {
                            Some(_) => Err(None),
                            None => Err(Some(e)),
                        },
                    }
                }
            };
            match outcome {
                Ok(entry) => {
                    self.write_head(trail, chunk_no, &entry).await;
                    metrics::histogram!("audit_append_seconds").record(started.elapsed());
                    return Ok(Appended::New(Box::new(entry)));
                }
                Err(Some(error)) => return Err(error.into()),
                Err(None) => {
                    conflicts += 1;
                    metrics::counter!("audit_append_conflicts_total").increment(1);
                    if conflicts >= self.max_attempts {
                        return Err(Error::Contended {
                            trail: name,
                            attempts: conflicts,
                        });
                    }
                    tokio::time::sleep(backoff(conflicts)).await;
                }
            }
        }
    }

    /// Finds or creates the dedupe marker; returns the first chunk the entry may be in.
    async fn claim(&self, trail: &TrailId, entry_id: &str) -> Result<u64, Error> {
        let key = trail.marker_key(entry_id);
        if let Some(marker) = self.read::<Marker>(&key).await? {
            return Ok(marker.value.from_chunk);
        }
        let from_chunk = self.head(trail).await?.map_or(0, |h| h.chunk);
        let item = SaveItem::new(&key, &Marker { from_chunk })?.first_write();
        match self.dapr.save_state(&self.store, &[item]).await {
            Ok(()) => Ok(from_chunk),
            // A concurrent duplicate created it first: its bound is the one every attempt obeys.
            Err(e) => match self.read::<Marker>(&key).await? {
                Some(marker) => Ok(marker.value.from_chunk),
                None => Err(e.into()),
            },
        }
    }

    /// Sequence number and hash the first entry of chunk `chunk_no` follows.
    async fn tail_of_previous(
        &self,
        trail: &TrailId,
        chunk_no: u64,
        walked: &Option<(u64, String)>,
    ) -> Result<(u64, String), Error> {
        if chunk_no == 0 {
            return Ok((0, GENESIS_HASH.to_owned()));
        }
        if let Some((seq, hash)) = walked {
            return Ok((seq + 1, hash.clone()));
        }
        let key = trail.chunk_key(chunk_no - 1);
        let previous = self.read::<Chunk>(&key).await?.map(|c| c.value);
        match previous.as_ref().and_then(|c| c.entries.last()) {
            Some(last) => Ok((last.seq + 1, last.hash.clone())),
            None => Err(Error::Corrupt {
                key,
                reason: format!("chunk {chunk_no} follows a missing or empty chunk"),
            }),
        }
    }

    /// Best effort: the head is only a hint (see the module docs).
    async fn write_head(&self, trail: &TrailId, chunk: u64, entry: &Entry) {
        let head = Head {
            chunk,
            count: entry.seq + 1,
            last_hash: entry.hash.clone(),
        };
        let result = match SaveItem::new(trail.head_key(), &head) {
            Ok(item) => self.dapr.save_state(&self.store, &[item]).await,
            Err(e) => Err(e),
        };
        if let Err(error) = result {
            tracing::warn!(trail = %trail.name(), %error, "could not update the trail head hint");
        }
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
        loop {
            let Some(chunk) = self.chunk(trail, at.chunk).await? else {
                return Ok(Page {
                    entries,
                    next: None,
                });
            };
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
    }

    /// Every chunk of the trail from chunk 0 until the first missing one, read in batches.
    pub async fn all_chunks(&self, trail: &TrailId) -> Result<Vec<(u64, Chunk)>, Error> {
        const BATCH: u64 = 16;
        let mut chunks = Vec::new();
        let mut next = 0u64;
        loop {
            let keys: Vec<String> = (next..next + BATCH).map(|n| trail.chunk_key(n)).collect();
            let items = self
                .dapr
                .get_bulk_state::<Chunk>(&self.store, &keys)
                .await?;
            for (i, item) in items.into_iter().enumerate() {
                if let Some(error) = item.error {
                    return Err(Error::Corrupt {
                        key: item.key,
                        reason: error,
                    });
                }
                match item.value {
                    Some(chunk) => chunks.push((next + i as u64, chunk)),
                    None => return Ok(chunks),
                }
            }
            next += BATCH;
        }
    }

    async fn read<T: serde::de::DeserializeOwned>(
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

/// Full-jitter backoff between conflicting attempts: 1 ms doubling to at most 50 ms.
fn backoff(attempt: u32) -> Duration {
    let bound = 1u64 << attempt.min(6);
    Duration::from_micros(rand::rng().random_range(0..=bound.min(50) * 1000))
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

    #[test]
    fn backoff_is_bounded() {
        for attempt in 0..100 {
            assert!(backoff(attempt) <= Duration::from_millis(50));
        }
    }
}
