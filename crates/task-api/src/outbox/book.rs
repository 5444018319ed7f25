//! What this process knows about the outbox entries it wrote ([`Book`]): where each stands, and
//! whether its change is projected into the index and its slot settled yet.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::{OUTBOX_BUDGET_BYTES, Outbox, OutboxEntry};
use crate::error::ApiError;
use crate::model::TaskRecord;
use crate::repository::{SlotUse, TaskSummary, outbox_event_key};

/// An entry's writer id and event number.
pub(super) type EntryId = (Uuid, u64);

/// Where an entry this process wrote stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Its write is running (the relay leaves it alone).
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

    /// What it counts against the budget ([`weight`]).
    fn weight(&self) -> usize {
        weight(self.stage, self.projected, self.bytes)
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

/// What a published entry whose change is not in the index yet counts against the budget: a
/// fixed share, not its JSON. Its event is out, and the cleaner projects such entries hundreds
/// at a time, so under a flat-out load hundreds of them wait for the next pass as a matter of
/// course; counted at their size they filled the budget and turned creates into 503s. Counted
/// this way, the budget still bounds an index that cannot be written (16,384 entries).
const UNPROJECTED_WEIGHT: usize = 64;

/// What an entry of `bytes` bytes of JSON counts against the budget: all of it until its event
/// is published (the broker may be down), [`UNPROJECTED_WEIGHT`] once it is published and
/// until it is projected, nothing once it is abandoned, or published and projected.
fn weight(stage: Stage, projected: bool, bytes: usize) -> usize {
    match stage {
        Stage::Abandoned => 0,
        Stage::Published if projected => 0,
        Stage::Published => UNPROJECTED_WEIGHT.min(bytes),
        Stage::InFlight | Stage::Committed | Stage::Unknown => bytes,
    }
}

/// The entries this process wrote and has not deleted yet.
#[derive(Debug, Default)]
pub(super) struct Book {
    entries: BTreeMap<EntryId, Pending>,
    /// The sum of the entries' [`weight`]s.
    waiting_bytes: usize,
}

impl Book {
    /// Moves an entry's share of the budget from `was` to `now` as its stage changes.
    fn recount(&mut self, was: usize, now: usize) {
        self.waiting_bytes = self.waiting_bytes.saturating_sub(was) + now;
    }

    /// The lowest event number of `instance` still in the book.
    pub(super) fn lowest(&self, instance: Uuid) -> Option<u64> {
        self.entries
            .range((instance, 0)..=(instance, u64::MAX))
            .next()
            .map(|((_, seq), _)| *seq)
    }
}

impl Outbox {
    /// Refuses a change while too many bytes of events wait for the broker.
    pub(super) fn check_budget(&self) -> Result<(), ApiError> {
        let waiting = self.book().waiting_bytes;
        if waiting > OUTBOX_BUDGET_BYTES {
            metrics::counter!("task_api_outbox_full_total").increment(1);
            return Err(ApiError::Unavailable(format!(
                "the outbox holds {waiting} bytes of events waiting for the broker or the \
                 index (limit {OUTBOX_BUDGET_BYTES}); the broker is not taking them, or the \
                 index cannot be written"
            )));
        }
        Ok(())
    }

    /// Enters an entry about to be written under `instance`'s number `seq` for the change to
    /// `record`; returns its key.
    pub(super) fn track(&self, id: EntryId, entry: &OutboxEntry, record: &TaskRecord) -> String {
        let key = outbox_event_key(id.0, id.1);
        let bytes = entry.envelope.get().len();
        let mut book = self.book();
        book.waiting_bytes += bytes;
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

    /// An entry whose write ended without a verdict (the write was dropped) is left to the
    /// relay to judge from the task record; one with a verdict is left as it is.
    pub(super) fn unknown_if_in_flight(&self, id: EntryId) {
        let in_flight = self
            .book()
            .entries
            .get(&id)
            .is_some_and(|p| p.stage == Stage::InFlight);
        if in_flight {
            self.set_stage(id, Stage::Unknown);
        }
    }

    /// Records what is now known about an entry.
    pub(super) fn set_stage(&self, id: EntryId, stage: Stage) {
        let mut book = self.book();
        let Some(pending) = book.entries.get_mut(&id) else {
            return;
        };
        let was = pending.weight();
        pending.stage = stage;
        if stage == Stage::Committed {
            pending.entry.committed = true;
        }
        let now = pending.weight();
        book.recount(was, now);
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

    /// The entries whose keys may be deleted: their ids, keys and stages.
    pub(super) fn removable(&self) -> Vec<(EntryId, String, Stage)> {
        self.book()
            .entries
            .iter()
            .filter(|(_, p)| p.removable())
            .map(|(id, p)| (*id, p.key.clone(), p.stage))
            .collect()
    }

    /// The committed entries not in the index yet (with their task's owner and id), and the
    /// settled ones (committed or abandoned) whose slot is not settled yet.
    pub(super) fn unsettled(&self) -> (Vec<(EntryId, Uuid, Uuid)>, SlotUses) {
        let book = self.book();
        let committed = |p: &Pending| matches!(p.stage, Stage::Committed | Stage::Published);
        let to_project = book
            .entries
            .iter()
            .filter(|(_, p)| committed(p) && !p.projected)
            .map(|(id, p)| (*id, p.user_id, p.entry.task_id))
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
                let was = pending.weight();
                pending.projected = true;
                let now = pending.weight();
                book.recount(was, now);
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
            if let Some(pending) = book.entries.remove(id) {
                book.recount(pending.weight(), 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_out_and_waiting_only_for_the_index_fit_the_budget_by_the_thousand() {
        // A flat-out load leaves a few thousand published changes for the cleaner's next pass.
        let (entries, bytes) = (4_000, 1_000);
        let unprojected = entries * weight(Stage::Published, false, bytes);
        assert!(unprojected < OUTBOX_BUDGET_BYTES, "{unprojected} bytes");
        // The same number the broker has not taken fill it: that is what the budget is for.
        let unpublished = entries * weight(Stage::Committed, false, bytes);
        assert!(unpublished > OUTBOX_BUDGET_BYTES, "{unpublished} bytes");
        // An index that cannot be written is still bounded.
        let bound = OUTBOX_BUDGET_BYTES / weight(Stage::Published, false, bytes);
        assert_eq!(bound, 16_384);
        assert_eq!(weight(Stage::Published, true, bytes), 0);
        assert_eq!(weight(Stage::Abandoned, false, bytes), 0);
    }
}
