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
        let _local = self.locks.lock(&trail.name()).await;
        let (results, head) = self.append_locked(trail, Work::new(drafts), from).await?;
        if let Some(head) = head {
            self.write_heads(&[(trail.clone(), head)]).await;
        }
        Ok(results)
    }

    /// Seals `drafts` in order as the entries of trail `name` from position `seq` on, the first
    /// linked to `prev_hash`, and pushes each onto `chunk` (stored under `key`).
    pub(crate) fn seal_onto(
        &self,
        chunk: &mut RawChunk,
        key: &str,
        name: &str,
        drafts: &[(usize, EntryDraft)],
        mut seq: u64,
        mut prev_hash: String,
    ) -> Result<Vec<(usize, Entry)>, Error> {
        let mut sealed = Vec::with_capacity(drafts.len());
        for (i, draft) in drafts {
            let entry = draft.clone().seal(&self.key, name, seq, &prev_hash);
            seq += 1;
            prev_hash.clone_from(&entry.hash);
            chunk.push(key, &entry)?;
            sealed.push((*i, entry));
        }
        Ok(sealed)
    }

    /// The append of `work` to `trail`, whose lock the caller holds: from chunk `from` on (or
    /// the claimed bound), read, dedupe, seal and an etag-checked write per chunk, again on a
    /// conflict.
    pub(crate) async fn append_locked(
        &self,
        trail: &TrailId,
        mut work: Work,
        from: Option<u64>,
    ) -> Result<(Vec<Appended>, Option<Head>), Error> {
        let name = trail.name();
        let started = std::time::Instant::now();
        let mut chunk_no = match from {
            Some(from) => from,
            None => {
                let trails = std::slice::from_ref(trail);
                let claims: Vec<Claim<'_>> = work
                    .todo
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
        while !work.todo.is_empty() {
            let key = trail.chunk_key(chunk_no);
            let current: Option<StateEntry<RawChunk>> = self.read(&key).await?;
            let (mut chunk, etag) = match current {
                Some(StateEntry { value, etag }) => (value, etag),
                None => (RawChunk::new(self.chunk_size), None),
            };
            work.drop_present(&chunk, &key)?;
            if work.todo.is_empty() {
                break;
            }
            let last = chunk.last(&key)?;
            if chunk.is_full() {
                previous = last;
                chunk_no += 1;
                continue;
            }
            let (seq, prev_hash) = match last {
                Some((seq, hash)) => (seq + 1, hash),
                None => self.tail_of_previous(trail, chunk_no, &previous).await?,
            };
            let room = chunk.capacity.saturating_sub(chunk.entries.len());
            let taking = work.todo.len().min(room);
            let sealed = self.seal_onto(
                &mut chunk,
                &key,
                &name,
                &work.todo[..taking],
                seq,
                prev_hash,
            )?;
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
                    work.todo.drain(..taking);
                    if let Some((_, last)) = sealed.last() {
                        last_written = Some((chunk_no, last.clone()));
                        // Entries left over did not fit: this chunk is full now.
                        previous = Some((last.seq, last.hash.clone()));
                    }
                    for (i, entry) in sealed {
                        work.results[i] = Some(Appended::New(Box::new(entry)));
                    }
                    self.remember_tail(&name, chunk_no);
                    if !work.todo.is_empty() {
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
        let results = work.finish(trail)?;
        Ok((results, head))
    }
}

/// The lowest bound of a claim (0 for none: every chunk is scanned).
pub(crate) fn lowest(bounds: &[Vec<u64>]) -> u64 {
    bounds.iter().flatten().copied().min().unwrap_or(0)
}

/// One trail's share of a batch: its drafts, of which later copies of an entry id follow the
/// first one's fate, and what is known of each so far.
#[derive(Debug)]
pub(crate) struct Work {
    pub(crate) results: Vec<Option<Appended>>,
    /// Drafts not yet found or appended, with their place in the batch.
    pub(crate) todo: Vec<(usize, EntryDraft)>,
    /// `(copy, first)`: places of repeated entry ids and of their first occurrence.
    pub(crate) copies: Vec<(usize, usize)>,
}

impl Work {
    pub(crate) fn new(drafts: Vec<EntryDraft>) -> Self {
        let mut first_of: HashMap<String, usize> = HashMap::new();
        let mut todo = Vec::with_capacity(drafts.len());
        let mut copies = Vec::new();
        let results = drafts.iter().map(|_| None).collect();
        for (i, draft) in drafts.into_iter().enumerate() {
            match first_of.get(&draft.entry_id) {
                Some(&first) => copies.push((i, first)),
                None => {
                    first_of.insert(draft.entry_id.clone(), i);
                    todo.push((i, draft));
                }
            }
        }
        Self {
            results,
            todo,
            copies,
        }
    }

    /// Marks the drafts `chunk` already holds as duplicates and drops them from `todo`.
    pub(crate) fn drop_present(&mut self, chunk: &RawChunk, key: &str) -> Result<(), Error> {
        let present = chunk.places(key)?;
        let results = &mut self.results;
        self.todo
            .retain(|(i, d)| match present.get(d.entry_id.as_str()) {
                Some(&seq) => {
                    results[*i] = Some(Appended::Duplicate { seq });
                    false
                }
                None => true,
            });
        Ok(())
    }

    /// One result per draft, in order, once every first occurrence has one.
    pub(crate) fn finish(self, trail: &TrailId) -> Result<Vec<Appended>, Error> {
        let mut results = self.results;
        for (i, first) in self.copies {
            let seq = match &results[first] {
                Some(Appended::New(e)) => e.seq,
                Some(Appended::Duplicate { seq }) => *seq,
                None => continue,
            };
            results[i] = Some(Appended::Duplicate { seq });
        }
        results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| Error::Corrupt {
                    key: trail.name(),
                    reason: "a batch entry was neither appended nor found".into(),
                })
            })
            .collect()
    }
}
