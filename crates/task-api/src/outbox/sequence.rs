//! The event numbers this process's per-event outbox keys are named with ([`Sequence`]),
//! reserved in blocks in the store's `outbox-range:{instance}` before use, so a replica draining
//! a dead writer knows which keys to look for.

use std::collections::{BTreeSet, HashSet};

use uuid::Uuid;

use super::Outbox;
use super::book::{Book, EntryId};
use crate::error::ApiError;
use crate::repository::{EventRange, StoreError};

/// How many event numbers one write of the range reserves. A replica draining a dead writer
/// reads every number in its range, so this also bounds the reads wasted on unused numbers.
pub(super) const RANGE_BLOCK: u64 = 1024;

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
    pub(super) fn take(&mut self, instance: Uuid) -> Result<Option<(u64, bool)>, ApiError> {
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
    pub(super) fn low_to_save(&self, book: &Book) -> Option<EventRange> {
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
    pub(super) fn tracked(&mut self, id: EntryId) {
        if id.0 == self.instance {
            self.untracked.remove(&id.1);
        }
    }
}

impl Outbox {
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
