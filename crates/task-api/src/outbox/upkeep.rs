//! The outbox's background upkeep in this process: the lease keeper, which renews the writer's
//! lease, and the cleaner, which projects committed changes into the user index
//! ([`crate::repository::projection`]), releases the open-task slots of closed tasks
//! ([`crate::repository::limit`]), deletes the keys of entries the process published and
//! projected (or whose change did not commit) in batches, and keeps the stored event range
//! tight.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Outbox;
use super::book::{SlotUses, Stage};

impl Outbox {
    /// Renews this process's writer lease well before it runs out, until `stop` turns true.
    pub async fn run_lease(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.lease.renew_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            if let Err(error) = self.lease.renew().await {
                tracing::warn!(%error, "could not renew the outbox lease; will retry");
            }
        }
    }

    /// Every `interval`, runs [`Self::sweep`] until `stop` turns true (a last sweep runs then).
    /// Whatever is missed, the relay handles.
    pub async fn run_cleaner(
        self,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = stop.changed() => true,
            };
            self.sweep().await;
            if stopping {
                return;
            }
        }
    }

    /// One pass of the cleaner, off the requests' path: projects the changes this process
    /// committed into the index (a few rounds, so a bucket that lost a race to another replica
    /// is redone at once), settles the slots of settled changes, then deletes, in as few
    /// transactions as [`crate::repository::DELETE_BATCH`] allows, the keys of the entries that
    /// are published and projected (or abandoned), and raises the stored `low` of the event
    /// range past them.
    pub(super) async fn sweep(&self) {
        let (to_project, slots) = self.unsettled();
        let mut left = to_project;
        for _ in 0..PROJECTION_ROUNDS {
            if left.is_empty() {
                break;
            }
            let changed: Vec<_> = left.iter().map(|(_, user, task)| (*user, *task)).collect();
            match self.repository.project(&changed).await {
                Ok(projected) => {
                    let (done, rest): (Vec<_>, Vec<_>) = left
                        .into_iter()
                        .partition(|(_, _, task)| projected.contains(task));
                    let ids: Vec<_> = done.iter().map(|(id, ..)| *id).collect();
                    self.mark_projected(&ids);
                    left = rest;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not project changes into the index; will retry");
                    break;
                }
            }
        }
        if !left.is_empty() {
            metrics::counter!("task_api_index_projection_retries_total")
                .increment(left.len() as u64);
        }
        self.release(&slots).await;
        let done = self.removable();
        if !done.is_empty() {
            let keys: Vec<String> = done.iter().map(|(_, key, _)| key.clone()).collect();
            match self.repository.delete_keys(&keys).await {
                Ok(()) => {
                    let abandoned = done
                        .iter()
                        .filter(|(.., stage)| *stage == Stage::Abandoned)
                        .count();
                    if abandoned > 0 {
                        metrics::counter!("task_api_outbox_discarded_total")
                            .increment(abandoned as u64);
                    }
                    let ids: Vec<_> = done.iter().map(|(id, ..)| *id).collect();
                    self.forget(&ids);
                }
                Err(error) => {
                    tracing::warn!(%error, keys = keys.len(),
                        "could not delete published outbox entries; will retry");
                }
            }
        }
        if self.lease.valid_id().is_some()
            && let Err(error) = self.save_low().await
        {
            tracing::warn!(%error, "could not save the outbox event range; will retry");
        }
    }

    /// Settles the slots of this process's settled changes of `user_id` now (a create that
    /// found no free slot calls this before giving up, so a task the client closed on this
    /// replica frees its slot at once); returns whether there were any to settle (released
    /// here or, when this release lost a race, by the cleaner running at the same time).
    pub(super) async fn settle_slots_of(&self, user_id: uuid::Uuid) -> bool {
        let (_, slots) = self.unsettled();
        let slots: Vec<_> = slots
            .into_iter()
            .filter(|(_, u)| u.user_id == user_id)
            .collect();
        if slots.is_empty() {
            return false;
        }
        self.release(&slots).await;
        true
    }

    /// Releases the slots of `slots` and marks those settled, [`SLOT_RELEASE_BATCH`] at a time;
    /// a batch that fails is tried one slot at a time, so one unreadable record or slot holds
    /// back no other. What fails stays for the next pass.
    async fn release(&self, slots: &SlotUses) {
        for batch in slots.chunks(SLOT_RELEASE_BATCH) {
            let uses: Vec<_> = batch.iter().map(|(_, u)| *u).collect();
            match self.repository.release_slots(&uses).await {
                Ok(()) => self.released(batch),
                Err(error) if batch.len() > 1 => {
                    tracing::debug!(%error, "could not release a batch of open-task slots; one at a time");
                    for one in batch {
                        match self.repository.release_slots(&[one.1]).await {
                            Ok(()) => self.released(std::slice::from_ref(one)),
                            Err(error) => {
                                tracing::warn!(%error, "could not release an open-task slot; will retry");
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not release an open-task slot; will retry");
                }
            }
        }
    }

    fn released(&self, slots: &[(super::book::EntryId, crate::repository::SlotUse)]) {
        let ids: Vec<_> = slots.iter().map(|(id, _)| *id).collect();
        // Counted before the entries stop showing as unsettled (see `pick_slot`).
        self.slot_releases.fetch_add(1, Ordering::SeqCst);
        self.mark_slots_settled(&ids);
    }
}

/// Slots released per bulk read and transaction.
const SLOT_RELEASE_BATCH: usize = 64;

/// Projection attempts per sweep for the buckets whose write lost a race.
const PROJECTION_ROUNDS: usize = 3;
