//! Appending to a trail: one etag-checked write of the tail chunk per entry, after the dedupe
//! marker bounds where an earlier attempt may have put it. The key layout and the reasoning for
//! why this neither loses nor doubles entries are in [`crate::trail`].

use std::sync::PoisonError;
use std::time::Duration;

use dapr_http::{SaveItem, StateEntry};
use rand::Rng as _;
use tracing::Instrument as _;

use crate::canonical::GENESIS_HASH;
use crate::entry::{Entry, EntryDraft};
use crate::error::Error;
use crate::trail::{Appended, Chunk, Head, Marker, TrailId, TrailStore};

impl TrailStore {
    /// Appends `draft` to `trail` unless an entry with its `entry_id` is already there. When
    /// traces are exported the append is a span of its own (its state calls are its children).
    pub async fn append(&self, trail: &TrailId, draft: EntryDraft) -> Result<Appended, Error> {
        let span = dapr_http::spans::traced(None, || {
            tracing::info_span!(
                "append",
                otel.name = "audit append",
                audit.trail = %trail.name(),
                audit.entry_id = %draft.entry_id,
                audit.seq = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            )
        });
        let Some(span) = span else {
            return self.append_untraced(trail, draft).await;
        };
        let appended = self
            .append_untraced(trail, draft)
            .instrument(span.clone())
            .await;
        match &appended {
            Ok(Appended::New(entry)) => {
                span.record("audit.seq", entry.seq);
            }
            Ok(Appended::Duplicate { seq }) => {
                span.record("audit.seq", seq);
            }
            Err(error) => dapr_http::spans::fail(&span, error),
        }
        appended
    }

    async fn append_untraced(&self, trail: &TrailId, draft: EntryDraft) -> Result<Appended, Error> {
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
                    let entry = draft.clone().seal(&self.key, &name, seq, &prev_hash);
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
                    let entry = draft.clone().seal(&self.key, &name, seq, &prev_hash);
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
                    self.remember_tail(&name, chunk_no);
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
        let from_chunk = match self.known_tail(&trail.name()) {
            Some(chunk) => chunk,
            None => self.head(trail).await?.map_or(0, |h| h.chunk),
        };
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

    pub(crate) fn known_tail(&self, name: &str) -> Option<u64> {
        let tails = self.tails.lock().unwrap_or_else(PoisonError::into_inner);
        tails.get(name).copied()
    }

    pub(crate) fn remember_tail(&self, name: &str, chunk: u64) {
        /// Trails remembered at most; forgetting only costs a head read.
        const MAX_REMEMBERED: usize = 10_000;
        let mut tails = self.tails.lock().unwrap_or_else(PoisonError::into_inner);
        if tails.len() >= MAX_REMEMBERED && !tails.contains_key(name) {
            tails.clear();
        }
        let known = tails.entry(name.to_owned()).or_insert(chunk);
        *known = (*known).max(chunk);
    }

    /// Sequence number and hash the first entry of chunk `chunk_no` follows.
    pub(crate) async fn tail_of_previous(
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
    pub(crate) async fn write_head(&self, trail: &TrailId, chunk: u64, entry: &Entry) {
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
}

/// Full-jitter backoff between conflicting attempts: 1 ms doubling to at most 50 ms.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let bound = 1u64 << attempt.min(6);
    Duration::from_micros(rand::rng().random_range(0..=bound.min(50) * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        for attempt in 0..100 {
            assert!(backoff(attempt) <= Duration::from_millis(50));
        }
    }
}
