//! Appending a batch of entries to one trail in as few state calls as one entry takes: one bulk
//! read and at most one write of the dedupe markers ([`crate::markers`]), then one etag-checked write of the tail
//! chunk per chunk the batch fills, then one head write. The guarantees are those of
//! [`crate::trail`]: every entry's marker exists before any attempt to append it, and every
//! chunk from the lowest marker bound on is scanned for each entry id before it is written, so
//! a duplicate (within the batch, across deliveries, or after a crash) is never appended twice.

use std::collections::HashMap;

use dapr_http::{SaveItem, StateEntry};

use crate::entry::{Entry, EntryDraft};
use crate::error::Error;
use crate::markers::Claim;
use crate::raw_chunk::RawChunk;
use crate::trail::{Appended, Head, TrailId, TrailStore};

impl TrailStore {
    /// Appends each of `drafts` to `trail` unless an entry with its `entry_id` is already there
    /// (or earlier in `drafts`); answers one [`Appended`] per draft, in order.
    pub async fn append_batch(
        &self,
        trail: &TrailId,
        drafts: Vec<EntryDraft>,
    ) -> Result<Vec<Appended>, Error> {
        self.append_batch_from(trail, drafts, None).await
    }

    /// [`Self::append_batch`] for entries whose markers already hold a bound for this trail,
    /// `from` being the lowest of them ([`crate::markers`]); `None` claims them first.
    pub async fn append_batch_from(
        &self,
        trail: &TrailId,
        drafts: Vec<EntryDraft>,
        from: Option<u64>,
    ) -> Result<Vec<Appended>, Error> {
        let (results, head) = self
            .append_batch_deferred(trail, drafts, from, None)
            .await?;
        if let Some(head) = head {
            self.write_heads(&[(trail.clone(), head)]).await;
        }
        Ok(results)
    }

    /// [`Self::append_batch_from`] that leaves the head hint to the caller, so the heads of a
    /// whole batch's trails go in one write ([`Self::write_heads`]). `ahead` is chunk `from`
    /// as a bulk read found it before this append took the trail's lock: used as the first
    /// read, and if another append moved the chunk since, its etag fails the write and the
    /// chunk is read again.
    pub async fn append_batch_deferred(
        &self,
        trail: &TrailId,
        drafts: Vec<EntryDraft>,
        from: Option<u64>,
        mut ahead: Option<ChunkAhead>,
    ) -> Result<(Vec<Appended>, Option<Head>), Error> {
        let name = trail.name();
        let _local = self.locks.lock(&name).await;
        let started = std::time::Instant::now();
        let mut results: Vec<Option<Appended>> = drafts.iter().map(|_| None).collect();
        // Later copies of an entry id in the batch follow the first one's fate.
        let mut first_of: HashMap<String, usize> = HashMap::new();
        let mut todo: Vec<(usize, EntryDraft)> = Vec::with_capacity(drafts.len());
        let mut copies: Vec<(usize, usize)> = Vec::new();
        for (i, draft) in drafts.into_iter().enumerate() {
            match first_of.get(&draft.entry_id) {
                Some(&first) => copies.push((i, first)),
                None => {
                    first_of.insert(draft.entry_id.clone(), i);
                    todo.push((i, draft));
                }
            }
        }
        let mut chunk_no = match from {
            Some(from) => from,
            None => {
                let trails = std::slice::from_ref(trail);
                let claims: Vec<Claim<'_>> = todo
                    .iter()
                    .map(|(_, d)| Claim {
                        entry_id: &d.entry_id,
                        trails,
                    })
                    .collect();
                lowest(&self.claim_all(&claims).await?)
            }
        };
        let mut previous: Option<(u64, String)> = None;
        let mut conflicts = 0u32;
        let mut last_written: Option<(u64, Entry)> = None;
        while !todo.is_empty() {
            let key = trail.chunk_key(chunk_no);
            let current: Option<StateEntry<RawChunk>> = match ahead.take() {
                Some(ahead) if ahead.chunk == chunk_no => ahead.entry,
                _ => self.read(&key).await?,
            };
            let (mut chunk, etag) = match current {
                Some(StateEntry { value, etag }) => (value, etag),
                None => (RawChunk::new(self.chunk_size), None),
            };
            {
                let present = chunk.places(&key)?;
                todo.retain(|(i, d)| match present.get(d.entry_id.as_str()) {
                    Some(&seq) => {
                        results[*i] = Some(Appended::Duplicate { seq });
                        false
                    }
                    None => true,
                });
            }
            if todo.is_empty() {
                break;
            }
            let last = chunk.last(&key)?;
            if chunk.is_full() {
                previous = last;
                chunk_no += 1;
                continue;
            }
            let (mut seq, mut prev_hash) = match last {
                Some((seq, hash)) => (seq + 1, hash),
                None => self.tail_of_previous(trail, chunk_no, &previous).await?,
            };
            let room = chunk.capacity.saturating_sub(chunk.entries.len());
            let taking = todo.len().min(room);
            let mut sealed = Vec::with_capacity(taking);
            for (i, draft) in todo.iter().take(taking) {
                let entry = draft.clone().seal(&self.key, &name, seq, &prev_hash);
                seq += 1;
                prev_hash = entry.hash.clone();
                chunk.push(&key, &entry)?;
                sealed.push((*i, entry));
            }
            let created = etag.is_none();
            let item = SaveItem::new(&key, &chunk)?.etag(etag).first_write();
            let saved = match self.dapr.save_state(&self.store, &[item]).await {
                Ok(()) => Ok(()),
                Err(e) if e.is_etag_conflict() => Err(None),
                // A create that lost the race is not typed as a conflict; a second read tells.
                Err(e) if created => match self.read::<RawChunk>(&key).await? {
                    Some(_) => Err(None),
                    None => Err(Some(e)),
                },
                Err(e) => Err(Some(e)),
            };
            match saved {
                Ok(()) => {
                    todo.drain(..taking);
                    if let Some((_, last)) = sealed.last() {
                        last_written = Some((chunk_no, last.clone()));
                        // Entries left over did not fit: this chunk is full now.
                        previous = Some((last.seq, last.hash.clone()));
                    }
                    for (i, entry) in sealed {
                        results[i] = Some(Appended::New(Box::new(entry)));
                    }
                    self.remember_tail(&name, chunk_no);
                    if !todo.is_empty() {
                        chunk_no += 1;
                    }
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
                    tokio::time::sleep(crate::locks::backoff(conflicts)).await;
                }
            }
        }
        let head = last_written.map(|(chunk, entry)| {
            metrics::histogram!("audit_append_seconds").record(started.elapsed());
            Head {
                chunk,
                count: entry.seq + 1,
                last_hash: entry.hash,
            }
        });
        for (i, first) in copies {
            let seq = match &results[first] {
                Some(Appended::New(e)) => e.seq,
                Some(Appended::Duplicate { seq }) => *seq,
                None => continue,
            };
            results[i] = Some(Appended::Duplicate { seq });
        }
        let results = results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| Error::Corrupt {
                    key: trail.name(),
                    reason: "a batch entry was neither appended nor found".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((results, head))
    }

    /// Chunk `chunk` of each trail, in one bulk read; `None` where a key could not be read
    /// (its append reads it again itself).
    pub async fn read_ahead(
        &self,
        wanted: &[(&TrailId, u64)],
    ) -> Result<Vec<Option<ChunkAhead>>, Error> {
        let keys: Vec<String> = wanted.iter().map(|(t, n)| t.chunk_key(*n)).collect();
        let items = self
            .dapr
            .get_bulk_state::<RawChunk>(&self.store, &keys)
            .await?;
        let mut found: HashMap<String, Option<StateEntry<RawChunk>>> = items
            .into_iter()
            .filter(|item| item.error.is_none())
            .map(|item| {
                let entry = item.value.map(|value| StateEntry {
                    value,
                    etag: item.etag,
                });
                (item.key, entry)
            })
            .collect();
        Ok(wanted
            .iter()
            .zip(&keys)
            .map(|((_, chunk), key)| {
                found.remove(key).map(|entry| ChunkAhead {
                    chunk: *chunk,
                    entry,
                })
            })
            .collect())
    }
}

/// A chunk read before its append began ([`TrailStore::read_ahead`]); `entry` is `None` when
/// the chunk did not exist.
#[derive(Debug)]
pub struct ChunkAhead {
    chunk: u64,
    entry: Option<StateEntry<RawChunk>>,
}

/// The lowest bound of a claim (0 for none: every chunk is scanned).
pub(crate) fn lowest(bounds: &[Vec<u64>]) -> u64 {
    bounds.iter().flatten().copied().min().unwrap_or(0)
}
