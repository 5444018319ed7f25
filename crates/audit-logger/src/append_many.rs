//! Appending a batch to every trail it touches with one bulk read and one bulk write.
//!
//! A batch of a hundred events touches a hundred task trails and a few user trails; appended one
//! trail at a time, that is a read and a write per trail. Here the batch takes the lock of every
//! trail no other append of this process holds (without waiting: a batch waiting for one
//! trail would hold all its others meanwhile, and concurrent batches share their users'
//! trails), reads each such trail's chunk `from` in one bulk read, and plans each append
//! against it. A trail whose new entries all fit in that chunk, and whose chunk either exists
//! or is the trail's first, gets its write planned; the planned writes go in one bulk save.
//! Then the locks are released, and what was not written (a busy trail, a full chunk, entries
//! that spill into the next chunk, a chunk that could not be read) takes the one-trail path
//! (`TrailStore::append_locked`), each under its own lock.
//!
//! Each chunk write in the bulk save is the same etag-checked compare-and-set as a single
//! append's, so the guarantees of [`crate::trail`] hold per trail. A bulk save that fails may
//! have applied some of its writes: daprd's default bulk save sets each key on its own, in
//! parallel, and joins the errors (components-contrib `state/bulk.go`, `DoBulkSetDelete`;
//! older releases set them in order and stopped at the first error), and this sidecar does the
//! same. So after a failure each planned chunk is read again: a trail whose last planned
//! entry is there with the planned hash was written; any other takes the one-trail path, which
//! reads, finds what is there, and appends the rest. (The hash covers the trail, the position,
//! the previous hash and the recording time, so another replica's write of the same event
//! carries a different one; only a replica that recorded it at the same microsecond could
//! take that write for its own, and then the trail still holds the entry once.)

use std::collections::HashMap;

use dapr_http::{SaveItem, StateEntry};
use futures::StreamExt as _;

use crate::append_batch::Work;
use crate::canonical::GENESIS_HASH;
use crate::entry::{Entry, EntryDraft};
use crate::error::Error;
use crate::raw_chunk::RawChunk;
use crate::trail::{Appended, Head, TrailId, TrailStore};

/// One trail's share of a batch: its drafts, and the chunk its markers bound it to.
#[derive(Debug)]
pub struct TrailBatch {
    pub trail: TrailId,
    pub drafts: Vec<EntryDraft>,
    pub from: u64,
}

/// What a trail's append did: one [`Appended`] per draft, and the head hint to write.
pub type TrailOutcome = Result<(Vec<Appended>, Option<Head>), Error>;

/// Planned writes per bulk save at most, in bytes of chunk JSON: far below daprd's default
/// 4 MiB request body, whatever `TRAIL_CHUNK_SIZE` makes a chunk weigh.
const MAX_SAVE_BYTES: usize = 1 << 20;

/// Trails taking the one-trail path at once.
const SLOW_CONCURRENCY: usize = 16;

/// A chunk write planned against the chunk as read.
struct Plan {
    chunk: u64,
    key: String,
    /// Taken when the write is sent.
    item: Option<SaveItem>,
    /// The new entries, with their places in the batch.
    sealed: Vec<(usize, Entry)>,
}

enum Step {
    Planned(Work, Plan),
    Slow(Work),
    /// Handed to the one-trail path, whose outcome replaces it.
    Taken,
    Done(TrailOutcome),
}

impl TrailStore {
    /// Appends each trail's drafts; one outcome per [`TrailBatch`], in order.
    pub async fn append_many(&self, batches: Vec<TrailBatch>) -> Vec<TrailOutcome> {
        let (trails, works): (Vec<(TrailId, u64)>, Vec<Work>) = batches
            .into_iter()
            .map(|b| ((b.trail, b.from), Work::new(b.drafts)))
            .unzip();
        let names: Vec<String> = trails.iter().map(|(trail, _)| trail.name()).collect();
        // Only trails nobody else in this process is appending to join the bulk write: waiting
        // here would hold every other trail of the batch meanwhile (and two batches share their
        // users' trails), so a busy trail appends on its own once the bulk write is done.
        let guards: Vec<_> = names.iter().map(|name| self.locks.try_lock(name)).collect();
        let started = std::time::Instant::now();

        let keys: Vec<String> = trails
            .iter()
            .zip(&guards)
            .filter(|(_, guard)| guard.is_some())
            .map(|((trail, from), _)| trail.chunk_key(*from))
            .collect();
        let mut read = match self.read_chunks(&keys).await {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(%error, "the batch's bulk read failed; each trail reads its own");
                HashMap::new()
            }
        };
        let mut steps: Vec<Step> = works
            .into_iter()
            .zip(&trails)
            .zip(&guards)
            .map(|((work, (trail, from)), guard)| {
                let current = guard
                    .as_ref()
                    .and_then(|_| read.remove(&trail.chunk_key(*from)));
                match current {
                    Some(current) => self.plan(trail, work, *from, current),
                    None => Step::Slow(work),
                }
            })
            .collect();

        self.save_planned(&names, &mut steps).await;

        // The one-trail appends take their own locks, so none is held while one waits.
        drop(guards);
        let mut slow = Vec::new();
        for (i, step) in steps.iter_mut().enumerate() {
            if !matches!(step, Step::Slow(_)) {
                continue;
            }
            if let Step::Slow(work) = std::mem::replace(step, Step::Taken) {
                let ((trail, from), name) = (&trails[i], &names[i]);
                slow.push(async move {
                    let _local = self.locks.lock(name).await;
                    let outcome = self.append_locked(trail, work, Some(*from)).await;
                    (i, outcome)
                });
            }
        }
        let finished: Vec<(usize, TrailOutcome)> = futures::stream::iter(slow)
            .buffer_unordered(SLOW_CONCURRENCY)
            .collect()
            .await;
        for (i, outcome) in finished {
            steps[i] = Step::Done(outcome);
        }
        steps
            .into_iter()
            .zip(&trails)
            .zip(&names)
            .map(|((step, (trail, _)), name)| match step {
                Step::Done(outcome) => outcome,
                Step::Planned(work, plan) => {
                    self.remember_tail(name, plan.chunk);
                    metrics::histogram!("audit_append_seconds").record(started.elapsed());
                    written(trail, work, plan)
                }
                Step::Slow(work) => Err(Error::Corrupt {
                    key: name.clone(),
                    reason: format!("{} entries were left unappended", work.todo.len()),
                }),
                Step::Taken => Err(Error::Corrupt {
                    key: name.clone(),
                    reason: "the append had no outcome".into(),
                }),
            })
            .collect()
    }

    /// The append of `work` to chunk `chunk_no` as `current` holds it, if one write does it.
    fn plan(
        &self,
        trail: &TrailId,
        mut work: Work,
        chunk_no: u64,
        current: Option<StateEntry<RawChunk>>,
    ) -> Step {
        let key = trail.chunk_key(chunk_no);
        let (mut chunk, etag) = match current {
            Some(StateEntry { value, etag }) => (value, etag),
            None if chunk_no == 0 => (RawChunk::new(self.chunk_size), None),
            // A missing later chunk links to the one before it, which the one-trail path reads.
            None => return Step::Slow(work),
        };
        if let Err(error) = work.drop_present(&chunk, &key) {
            return Step::Done(Err(error));
        }
        if work.todo.is_empty() {
            return Step::Done(work.finish(trail).map(|results| (results, None)));
        }
        let room = chunk.capacity.saturating_sub(chunk.entries.len());
        if work.todo.len() > room {
            return Step::Slow(work);
        }
        let (seq, prev_hash) = match chunk.last(&key) {
            Ok(Some((seq, hash))) => (seq + 1, hash),
            Ok(None) if chunk_no == 0 => (0, GENESIS_HASH.to_owned()),
            Ok(None) => return Step::Slow(work),
            Err(error) => return Step::Done(Err(error)),
        };
        let sealed =
            match self.seal_onto(&mut chunk, &key, &trail.name(), &work.todo, seq, prev_hash) {
                Ok(sealed) => sealed,
                Err(error) => return Step::Done(Err(error)),
            };
        match SaveItem::new(&key, &chunk) {
            // Without an etag, first-write makes it a create that fails if the chunk exists.
            Ok(item) => Step::Planned(
                work,
                Plan {
                    chunk: chunk_no,
                    key,
                    item: Some(item.etag(etag).first_write()),
                    sealed,
                },
            ),
            Err(error) => Step::Done(Err(error.into())),
        }
    }

    /// Writes the planned chunks in bulk saves of at most [`MAX_SAVE_BYTES`]; a plan whose
    /// save failed and whose chunk does not hold its entries becomes [`Step::Slow`].
    async fn save_planned(&self, names: &[String], steps: &mut [Step]) {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut size = 0;
        for (i, step) in steps.iter().enumerate() {
            let Step::Planned(_, plan) = step else {
                continue;
            };
            let weight = plan.item.as_ref().map_or(0, |item| item.value.get().len());
            match groups.last_mut() {
                Some(group) if size + weight <= MAX_SAVE_BYTES => group.push(i),
                _ => {
                    groups.push(vec![i]);
                    size = 0;
                }
            }
            size += weight;
        }
        for group in groups {
            let mut items = Vec::with_capacity(group.len());
            for &i in &group {
                if let Step::Planned(_, plan) = &mut steps[i]
                    && let Some(item) = plan.item.take()
                {
                    items.push(item);
                }
            }
            let Err(error) = self.dapr.save_state(&self.store, &items).await else {
                continue;
            };
            tracing::debug!(%error, trails = group.len(), "a bulk chunk write failed; checking which landed");
            let keys: Vec<String> = items.into_iter().map(|item| item.key).collect();
            let read = self.read_chunks(&keys).await.unwrap_or_default();
            for &i in &group {
                let landed = match &steps[i] {
                    Step::Planned(_, plan) => match read.get(&plan.key) {
                        Some(Some(current)) => holds(&current.value, plan).unwrap_or(false),
                        _ => false,
                    },
                    _ => continue,
                };
                if landed {
                    continue;
                }
                metrics::counter!("audit_append_conflicts_total").increment(1);
                tracing::debug!(trail = %names[i], "a chunk write did not land; the trail appends on its own");
                if let Step::Planned(work, _) = std::mem::replace(&mut steps[i], Step::Taken) {
                    steps[i] = Step::Slow(work);
                }
            }
        }
    }

    /// `keys` in one bulk read: a key's current chunk (`None`: absent). A key the store could
    /// not read is left out, and its append reads it itself.
    async fn read_chunks(
        &self,
        keys: &[String],
    ) -> Result<HashMap<String, Option<StateEntry<RawChunk>>>, Error> {
        let items = self
            .dapr
            .get_bulk_state::<RawChunk>(&self.store, keys)
            .await?;
        Ok(items
            .into_iter()
            .filter(|item| item.error.is_none())
            .map(|item| {
                let entry = item.value.map(|value| StateEntry {
                    value,
                    etag: item.etag,
                });
                (item.key, entry)
            })
            .collect())
    }
}

/// Whether `chunk` holds the last entry `plan` wrote, with the hash it was sealed with: the
/// chunk is written whole, so then the plan's write landed.
fn holds(chunk: &RawChunk, plan: &Plan) -> Result<bool, Error> {
    let Some((_, last)) = plan.sealed.last() else {
        return Ok(false);
    };
    Ok(chunk.hash_of(&plan.key, &last.draft.entry_id)?.as_deref() == Some(last.hash.as_str()))
}

/// The outcome of a plan whose write landed.
fn written(trail: &TrailId, mut work: Work, plan: Plan) -> TrailOutcome {
    let head = plan.sealed.last().map(|(_, last)| Head {
        chunk: plan.chunk,
        count: last.seq + 1,
        last_hash: last.hash.clone(),
    });
    work.todo.clear();
    for (i, entry) in plan.sealed {
        work.results[i] = Some(Appended::New(Box::new(entry)));
    }
    Ok((work.finish(trail)?, head))
}
