//! Appending to a trail: one etag-checked write of the tail chunk per entry, after the dedupe
//! marker ([`crate::markers`]) bounds where an earlier attempt may have put it. The key layout and the reasoning for
//! why this neither loses nor doubles entries are in [`crate::trail`].

use std::sync::PoisonError;

use dapr_http::{SaveItem, StateEntry};
use tracing::Instrument as _;

use crate::canonical::GENESIS_HASH;
use crate::entry::{Entry, EntryDraft};
use crate::error::Error;
use crate::markers::Claim;
use crate::raw_chunk::RawChunk;
use crate::trail::{Appended, Head, TrailId, TrailStore};

impl TrailStore {
    /// Appends `draft` to `trail` unless an entry with its `entry_id` is already there. When
    /// traces are exported the append is a span of its own (its state calls are its children).
    pub async fn append(&self, trail: &TrailId, draft: EntryDraft) -> Result<Appended, Error> {
        self.append_from(trail, draft, None).await
    }

    /// [`Self::append`] for an entry whose marker already holds `from`, this trail's bound
    /// ([`crate::markers`]); `None` claims it first.
    pub async fn append_from(
        &self,
        trail: &TrailId,
        draft: EntryDraft,
        from: Option<u64>,
    ) -> Result<Appended, Error> {
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
            return self.append_untraced(trail, draft, from).await;
        };
        let appended = self
            .append_untraced(trail, draft, from)
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

    async fn append_untraced(
        &self,
        trail: &TrailId,
        draft: EntryDraft,
        from: Option<u64>,
    ) -> Result<Appended, Error> {
        let name = trail.name();
        let _local = self.locks.lock(&name).await;
        let started = std::time::Instant::now();
        let from = match from {
            Some(from) => from,
            None => self.claim_one(&draft.entry_id, trail).await?,
        };
        let mut chunk_no = from;
        // The last entry of the previous (full) chunk, once walked past.
        let mut previous: Option<(u64, String)> = None;
        let mut conflicts = 0u32;
        loop {
            let key = trail.chunk_key(chunk_no);
            let current: Option<StateEntry<RawChunk>> = self.read(&key).await?;
            let outcome = match current {
                Some(StateEntry {
                    value: mut chunk,
                    etag,
                }) => {
                    if let Some(seq) = chunk.find(&key, &draft.entry_id)? {
                        return Ok(Appended::Duplicate { seq });
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
                    let entry = draft.clone().seal(&self.key, &name, seq, &prev_hash);
                    chunk.push(&key, &entry)?;
                    let item = SaveItem::new(&key, &chunk)?.etag(etag).first_write();
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
                    let mut chunk = RawChunk::new(self.chunk_size);
                    chunk.push(&key, &entry)?;
                    // Create-if-absent: first-write without an etag fails if another writer
                    // created the chunk first. That failure is not typed as a conflict by the
                    // store, so it is told apart by reading the chunk again.
                    let item = SaveItem::new(&key, &chunk)?.first_write();
                    match self.dapr.save_state(&self.store, &[item]).await {
                        Ok(()) => Ok(entry),
                        Err(e) => match self.read::<RawChunk>(&key).await? {
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
                    tokio::time::sleep(crate::locks::backoff(conflicts)).await;
                }
            }
        }
    }

    /// The bound of `entry_id` in `trail`, claimed if its marker has none yet.
    async fn claim_one(&self, entry_id: &str, trail: &TrailId) -> Result<u64, Error> {
        let claims = [Claim {
            entry_id,
            trails: std::slice::from_ref(trail),
        }];
        self.claim_all(&claims)
            .await?
            .first()
            .and_then(|bounds| bounds.first().copied())
            .ok_or_else(|| Error::Corrupt {
                key: crate::markers::event_marker_key(entry_id),
                reason: "the claim answered no bound".into(),
            })
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
        let previous = self.read::<RawChunk>(&key).await?.map(|c| c.value);
        let last = match &previous {
            Some(chunk) => chunk.last(&key)?,
            None => None,
        };
        match last {
            Some((seq, hash)) => Ok((seq + 1, hash)),
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
        self.write_heads(&[(trail.clone(), head)]).await;
    }

    /// Writes the heads of several trails in one call. Best effort, as a single head write:
    /// a head not written only costs a later append or reader a walk through full chunks.
    pub async fn write_heads(&self, heads: &[(TrailId, Head)]) {
        let items: Result<Vec<SaveItem>, _> = heads
            .iter()
            .map(|(trail, head)| SaveItem::new(trail.head_key(), head))
            .collect();
        let result = match items {
            Ok(items) => self.dapr.save_state(&self.store, &items).await,
            Err(e) => Err(e),
        };
        if let Err(error) = result {
            let first = heads
                .first()
                .map(|(trail, _)| trail.name())
                .unwrap_or_default();
            tracing::warn!(trail = %first, trails = heads.len(), %error, "could not update the trail head hints");
        }
    }
}
