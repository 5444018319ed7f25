//! What this process knows about the outbox entries it wrote ([`Book`]), and the event numbers
//! its per-event keys are named with ([`Sequence`], reserved in blocks in the store's
//! `outbox-range:{instance}` before use, so a replica draining a dead writer knows which keys to
//! look for).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use super::{OUTBOX_BUDGET_BYTES, Outbox, OutboxEntry};
use crate::error::ApiError;
use crate::model::TaskRecord;
use crate::repository::{EventRange, SlotUse, StoreError, TaskSummary, outbox_event_key};

/// How many event numbers one write of the range reserves. A replica draining a dead writer
/// reads every number in its range, so this also bounds the reads wasted on unused numbers.
pub(super) const RANGE_BLOCK: u64 = 1024;

/// An entry's writer id and event number.
pub(super) type EntryId = (Uuid, u64);

/// Where an entry this process wrote stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Its transaction is running (or the request was dropped while it ran).
    InFlight,
    /// Its change committed; not published yet.
    Committed,
    /// Its transaction's outcome could not be read; the relay judges it from the task record.
    Unknown,
    /// Published; its key is deleted by the next sweep.
    Published,
    /// Its change did not commit; its key is deleted by the next sweep.
    Abandoned,
}

impl Stage {
    fn done(self) -> bool {
        matches!(self, Stage::Published | Stage::Abandoned)
    }
}

/// Slots to settle, each with the entry whose change took or gave it up.
pub(super) type SlotUses = Vec<(EntryId, SlotUse)>;

/// One entry this process wrote.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) key: String,
    pub(super) entry: OutboxEntry,
    pub(super) stage: Stage,
    bytes: usize,
    /// The task's owner.
    pub(super) user_id: Uuid,
    /// The task's summary after the change (`None`: deleted), shown by this process's lists
    /// until the change is projected into the index.
    pub(super) summary: Option<TaskSummary>,
    /// The change is in the index: the key may go once the event is published.
    pub(super) projected: bool,
    /// The slot the change took or gave up is settled (released unless its task holds it).
    pub(super) slot_settled: bool,
}

impl Pending {
    /// Whether its key may be deleted: an abandoned entry once its slot is settled, a
    /// published one once it is also projected.
    fn removable(&self) -> bool {
        self.slot_settled
            && match self.stage {
                Stage::Abandoned => true,
                Stage::Published => self.projected,
                _ => false,
            }
    }

    /// The slot this entry's change took or gave up, to settle.
    pub(super) fn slot_use(&self) -> Option<SlotUse> {
        self.entry.slot.map(|slot| SlotUse {
            user_id: self.user_id,
            task_id: self.entry.task_id,
            slot,
        })
    }
}

/// The entries this process wrote and has not deleted yet.
#[derive(Debug, Default)]
pub(super) struct Book {
    entries: BTreeMap<EntryId, Pending>,
    /// The JSON size of the entries not yet published nor abandoned.
    unpublished_bytes: usize,
}

impl Book {
    /// The lowest event number of `instance` still in the book.
    fn lowest(&self, instance: Uuid) -> Option<u64> {
        self.entries
            .range((instance, 0)..=(instance, u64::MAX))
            .next()
            .map(|((_, seq), _)| *seq)
    }
}

/// The event numbers of one writer id: `next` is the next to use, `high` the first not reserved
/// in the store yet, `saved_low` the `low` last written.
#[derive(Debug)]
pub(super) struct Sequence {
    instance: Uuid,
    next: u64,
    high: u64,
    saved_low: u64,
    /// Numbers handed out whose entries are not in the book yet: a request may still write
    /// their keys, so `low` must not pass them though the book does not show them.
    untracked: BTreeSet<u64>,
    /// The ids this process wrote under before: a lapsed lease is never written under again,
    /// and starting its numbers over would reuse keys whose entries may be unpublished.
    retired: HashSet<Uuid>,
}

impl Sequence {
    pub(super) fn new(instance: Uuid) -> Self {
        Self {
            instance,
            next: 0,
            high: 0,
            saved_low: 0,
            untracked: BTreeSet::new(),
            retired: HashSet::new(),
        }
    }

    /// Takes the next reserved number of writer `instance`: `None` when the reserved ones are
    /// used up (the caller reserves a block and asks again); the flag says the next block is
    /// due, half-way through this one. A request that took an id before the lease moved on to
    /// a new one is refused with 503 (the client retries and gets the new id): numbering it
    /// afresh would hand out numbers already used.
    fn take(&mut self, instance: Uuid) -> Result<Option<(u64, bool)>, ApiError> {
        if self.instance != instance {
            if self.retired.contains(&instance) {
                metrics::counter!("task_api_outbox_stale_writer_total").increment(1);
                return Err(ApiError::Unavailable(
                    "this replica's outbox writer id changed during the request; retry".into(),
                ));
            }
            let mut retired = std::mem::take(&mut self.retired);
            retired.insert(self.instance);
            *self = Sequence {
                retired,
                ..Sequence::new(instance)
            };
        }
        if self.next < self.high {
            let seq = self.next;
            self.next += 1;
            self.untracked.insert(seq);
            let ahead = self.high - self.next == RANGE_BLOCK / 2;
            Ok(Some((seq, ahead)))
        } else {
            Ok(None)
        }
    }

    /// The range to store so that its `low` rises to the lowest number this writer may still
    /// have a key under (per `book`), or `None` when the stored one is already there.
    fn low_to_save(&self, book: &Book) -> Option<EventRange> {
        let low = [book.lowest(self.instance), self.untracked.first().copied()]
            .into_iter()
            .flatten()
            .fold(self.next, u64::min);
        if low <= self.saved_low || self.high == 0 {
            return None;
        }
        Some(EventRange {
            low,
            high: self.high,
        })
    }

    /// Number `id` is in the book now, which holds `low` below it from here on.
    fn tracked(&mut self, id: EntryId) {
        if id.0 == self.instance {
            self.untracked.remove(&id.1);
        }
    }
}

impl Outbox {
    /// Refuses a change while too many bytes of events wait for the broker.
    pub(super) fn check_budget(&self) -> Result<(), ApiError> {
        let waiting = self.book().unpublished_bytes;
        if waiting > OUTBOX_BUDGET_BYTES {
            metrics::counter!("task_api_outbox_full_total").increment(1);
            return Err(ApiError::Unavailable(format!(
                "the outbox holds {waiting} bytes of unpublished events (limit \
                 {OUTBOX_BUDGET_BYTES}); the broker is not taking them"
            )));
        }
        Ok(())
    }

    /// Takes the next event number of writer `instance`, reserving a block in the store first
    /// when the reserved ones are used up (and, half-way through a block, the next block in the
    /// background, so requests seldom wait for it).
    pub(super) async fn allocate(&self, instance: Uuid) -> Result<u64, ApiError> {
        loop {
            let ahead = self.sequence().take(instance)?;
            match ahead {
                Some((seq, ahead)) => {
                    if ahead {
                        let outbox = self.clone();
                        tokio::spawn(async move {
                            if let Err(error) = outbox.reserve(instance).await {
                                tracing::warn!(%error, "could not reserve outbox event numbers ahead");
                            }
                        });
                    }
                    return Ok(seq);
                }
                None => self.reserve(instance).await?,
            }
        }
    }

    /// Raises the reserved range of `instance` by a block, unless another call just did.
    async fn reserve(&self, instance: Uuid) -> Result<(), StoreError> {
        let _turn = self.range_turn.lock().await;
        let range = {
            let sequence = self.sequence();
            if sequence.instance != instance || sequence.high - sequence.next > RANGE_BLOCK / 2 {
                return Ok(());
            }
            EventRange {
                low: sequence.saved_low,
                high: sequence.high + RANGE_BLOCK,
            }
        };
        self.repository.save_event_range(instance, range).await?;
        let mut sequence = self.sequence();
        if sequence.instance == instance {
            sequence.high = sequence.high.max(range.high);
        }
        Ok(())
    }

    /// Raises the stored `low` of the current writer id to its lowest entry still in the book.
    pub(super) async fn save_low(&self) -> Result<(), StoreError> {
        let _turn = self.range_turn.lock().await;
        let (instance, range) = {
            let sequence = self.sequence();
            let range = sequence.low_to_save(&self.book());
            (sequence.instance, range)
        };
        let Some(range) = range else {
            return Ok(());
        };
        self.repository.save_event_range(instance, range).await?;
        let mut sequence = self.sequence();
        if sequence.instance == instance {
            sequence.saved_low = sequence.saved_low.max(range.low);
        }
        Ok(())
    }

    /// Enters an entry about to be written under `instance`'s number `seq` for the change to
    /// `record`; returns its key.
    pub(super) fn track(&self, id: EntryId, entry: &OutboxEntry, record: &TaskRecord) -> String {
        let key = outbox_event_key(id.0, id.1);
        let bytes = entry.envelope.get().len();
        let mut book = self.book();
        book.unpublished_bytes += bytes;
        book.entries.insert(
            id,
            Pending {
                key: key.clone(),
                entry: entry.clone(),
                stage: Stage::InFlight,
                bytes,
                user_id: record.task.user_id,
                summary: (!record.deleted).then(|| TaskSummary::from(record)),
                projected: false,
                slot_settled: entry.slot.is_none(),
            },
        );
        // Only once the book holds it: in between, one of the two always keeps `low` below it.
        drop(book);
        self.sequence().tracked(id);
        key
    }

    /// Records what is now known about an entry.
    pub(super) fn set_stage(&self, id: EntryId, stage: Stage) {
        let mut book = self.book();
        let Some(pending) = book.entries.get_mut(&id) else {
            return;
        };
        let was_done = pending.stage.done();
        pending.stage = stage;
        if stage == Stage::Committed {
            pending.entry.committed = true;
        }
        let bytes = pending.bytes;
        if stage.done() && !was_done {
            book.unpublished_bytes = book.unpublished_bytes.saturating_sub(bytes);
        } else if was_done && !stage.done() {
            book.unpublished_bytes += bytes;
        }
    }

    /// The entries in one of `stages`, recorded no later than `cutoff` when one is given.
    pub(super) fn entries_in(
        &self,
        stages: &[Stage],
        cutoff: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Vec<(EntryId, Pending)> {
        self.book()
            .entries
            .iter()
            .filter(|(_, p)| stages.contains(&p.stage))
            .filter(|(_, p)| cutoff.is_none_or(|cutoff| p.entry.recorded_at <= cutoff))
            .map(|(id, p)| (*id, p.clone()))
            .collect()
    }

    /// The entries whose keys may be deleted.
    pub(super) fn removable(&self) -> Vec<(EntryId, Pending)> {
        self.book()
            .entries
            .iter()
            .filter(|(_, p)| p.removable())
            .map(|(id, p)| (*id, p.clone()))
            .collect()
    }

    /// The committed entries not in the index yet, and the settled ones (committed or
    /// abandoned) whose slot is not settled yet.
    pub(super) fn unsettled(&self) -> (Vec<(EntryId, Pending)>, SlotUses) {
        let book = self.book();
        let committed = |p: &Pending| matches!(p.stage, Stage::Committed | Stage::Published);
        let to_project = book
            .entries
            .iter()
            .filter(|(_, p)| committed(p) && !p.projected)
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        let slots = book
            .entries
            .iter()
            .filter(|(_, p)| (committed(p) || p.stage == Stage::Abandoned) && !p.slot_settled)
            .filter_map(|(id, p)| p.slot_use().map(|u| (*id, u)))
            .collect();
        (to_project, slots)
    }

    /// Records that the changes of `ids` are in the index.
    pub(super) fn mark_projected(&self, ids: &[EntryId]) {
        let mut book = self.book();
        for id in ids {
            if let Some(pending) = book.entries.get_mut(id) {
                pending.projected = true;
            }
        }
    }

    /// Records that the slots of `ids` are settled.
    pub(super) fn mark_slots_settled(&self, ids: &[EntryId]) {
        let mut book = self.book();
        for id in ids {
            if let Some(pending) = book.entries.get_mut(id) {
                pending.slot_settled = true;
            }
        }
    }

    /// The latest committed change of each of `user_id`'s tasks that is not in the index yet:
    /// its version and summary (`None`: deleted). A list shows these over the index, so a
    /// client sees its own changes at once.
    pub(super) fn unprojected_of(
        &self,
        user_id: Uuid,
    ) -> HashMap<Uuid, (u64, Option<TaskSummary>)> {
        let book = self.book();
        let mut latest: HashMap<Uuid, (u64, Option<TaskSummary>)> = HashMap::new();
        for pending in book.entries.values() {
            if pending.user_id != user_id
                || pending.projected
                || !matches!(pending.stage, Stage::Committed | Stage::Published)
            {
                continue;
            }
            let version = pending.entry.version;
            if latest
                .get(&pending.entry.task_id)
                .is_none_or(|(known, _)| *known < version)
            {
                latest.insert(pending.entry.task_id, (version, pending.summary.clone()));
            }
        }
        latest
    }

    /// Forgets entries whose keys are deleted.
    pub(super) fn forget(&self, ids: &[EntryId]) {
        let mut book = self.book();
        for id in ids {
            if let Some(pending) = book.entries.remove(id)
                && !pending.stage.done()
            {
                book.unpublished_bytes = book.unpublished_bytes.saturating_sub(pending.bytes);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Takes a number of `instance` the way `Outbox::allocate` does, raising `high` by a block
    /// (what `reserve` stores) when the reserved ones are used up; `None`: refused.
    fn allocate(sequence: &mut Sequence, instance: Uuid) -> Option<u64> {
        for _ in 0..2 {
            match sequence.take(instance) {
                Ok(Some((seq, _))) => return Some(seq),
                Ok(None) => {}
                Err(_) => return None,
            }
            if sequence.instance == instance {
                sequence.high += RANGE_BLOCK;
            }
        }
        None
    }

    #[test]
    fn low_never_passes_a_number_taken_but_not_yet_in_the_book() {
        let writer = Uuid::new_v4();
        let mut sequence = Sequence::new(writer);
        let book = Book::default();
        let seq = allocate(&mut sequence, writer).unwrap();
        // The request has its number and has not entered its entry yet: the cleaner runs now.
        let low = sequence.low_to_save(&book);
        assert!(
            low.is_none_or(|range| range.low <= seq),
            "low {low:?} passes number {seq}, whose key may still be written"
        );
        // Entered and then deleted: nothing holds `low` back any more.
        sequence.tracked((writer, seq));
        let low = sequence.low_to_save(&book).map(|range| range.low);
        assert_eq!(low, Some(seq + 1));
    }

    #[test]
    fn a_number_is_never_handed_out_twice_for_one_writer_id() {
        let (lapsed, current) = (Uuid::new_v4(), Uuid::new_v4());
        let mut sequence = Sequence::new(lapsed);
        let mut given = HashSet::new();
        // Requests that took the lapsed id before the lease ran out alternate with those
        // holding the new one.
        for instance in [lapsed, lapsed, current, lapsed, current, lapsed] {
            if let Some(seq) = allocate(&mut sequence, instance) {
                assert!(
                    given.insert((instance, seq)),
                    "number {seq} of {instance} handed out twice"
                );
            }
        }
    }
}
