//! The relay: publishes what requests left behind (a crash, a failed publish) and discards what
//! never committed: this process's own entries (from what it knows of them), the entries of
//! writers whose lease ended (a process that died: the per-event keys its event range names),
//! and the shards of the earlier layouts. A departed writer's entry is projected into the
//! index and its slot settled before its key is deleted, as the cleaner does for its own.
//!
//! A pass never stops at a failure: an entry that cannot be checked or published is counted in
//! [`RelayReport::failed`], stays where it is for the next pass, and the pass goes on with the
//! next entry and the next shard, so one bad entry or shard holds nothing else back.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::book::Stage;
use super::{Outbox, OutboxEntry};
use crate::repository::{
    OutboxShard, SlotUse, StoreError, legacy_outbox_key, outbox_event_key, outbox_key,
};

/// What one relay pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub published: usize,
    pub discarded: usize,
    /// Younger than the grace period: left to the request that wrote them.
    pub kept: usize,
    /// Neither provably committed nor provably not: kept, never published (see
    /// [`Outbox::verdict`]).
    pub unproven: usize,
    /// Reads, publishes or writes that failed; retried by the next pass.
    pub failed: usize,
}

/// What [`Outbox::settle`] did with an entry.
enum Settled {
    Published,
    /// Committed, but the publish failed: the next pass tries again.
    PublishFailed,
    /// Its change never committed.
    Discarded,
    /// Its task could not be read: the next pass judges it again.
    Unread,
    /// Older than its task's recorded history: kept, never published.
    Unproven,
}

/// Whether an entry's change committed.
enum Verdict {
    Committed,
    NotCommitted,
    Unproven,
}

impl Outbox {
    /// One relay pass: entries older than `grace` are published when their change committed and
    /// discarded when it did not, then removed. Failures are counted in the report and left for
    /// the next pass; the pass itself does not fail.
    pub async fn relay_once(&self, grace: Duration) -> Result<RelayReport, StoreError> {
        let mut report = RelayReport::default();
        let cutoff =
            Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        self.relay_own(cutoff, &mut report).await;
        let me = self.lease.valid_id();
        for shard in 0..self.shards {
            self.relay_shard(&legacy_outbox_key(shard), cutoff, &mut report)
                .await;
        }
        if let Err(error) = self.relay_departed(me, cutoff, &mut report).await {
            report.failed += 1;
            tracing::warn!(%error, "could not look for the outboxes of departed writers");
        }
        Ok(report)
    }

    /// This process's own entries older than `cutoff` that are not known published: a failed
    /// publish, a request dropped before it published, a transaction whose outcome could not be
    /// read. Judged from what the process knows, or from the task record when it knows nothing.
    /// Their keys are deleted by the next sweep. An entry whose write is still running
    /// ([`Stage::InFlight`]) is never judged, however long the write takes: a read of the record
    /// before the transaction lands would discard a change about to commit (and forget it,
    /// so it would never be projected) or publish a create about to be taken back. The write
    /// always leaves that stage when it ends, even when it is dropped (`Outbox::write`).
    async fn relay_own(&self, cutoff: DateTime<Utc>, report: &mut RelayReport) {
        let waiting = self.entries_in(&[Stage::Committed, Stage::Unknown], Some(cutoff));
        for (id, pending) in waiting {
            let known_committed = pending.stage == Stage::Committed;
            match self.settle(&pending.entry, known_committed, report).await {
                Settled::Published => self.set_stage(id, Stage::Published),
                Settled::PublishFailed => self.set_stage(id, Stage::Committed),
                Settled::Discarded => self.set_stage(id, Stage::Abandoned),
                Settled::Unread | Settled::Unproven => {}
            }
        }
    }

    /// Drains the entries of every registered writer other than `me` whose lease is gone (the
    /// per-event keys its event range names, and its shards of the earlier layout), and
    /// unregisters each once nothing is left.
    async fn relay_departed(
        &self,
        me: Option<Uuid>,
        cutoff: DateTime<Utc>,
        report: &mut RelayReport,
    ) -> Result<(), StoreError> {
        let others: Vec<_> = self
            .repository
            .instances()
            .await?
            .into_iter()
            .filter(|instance| Some(instance.id) != me)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = others.iter().map(|instance| instance.id).collect();
        let alive = self.repository.leased(&ids).await?;
        for instance in others.iter().filter(|i| !alive.contains(&i.id)) {
            let mut left = false;
            for shard in 0..instance.shards {
                let key = outbox_key(instance.id, shard);
                left |= self.relay_shard(&key, cutoff, report).await;
            }
            if let Some(range) = self.repository.event_range(instance.id).await? {
                for seq in range.low..range.high {
                    let key = outbox_event_key(instance.id, seq);
                    left |= self.relay_shard(&key, cutoff, report).await;
                }
                if !left {
                    self.repository.delete_event_range(instance.id).await?;
                }
            }
            if !left {
                self.repository.unregister(instance.id).await?;
                tracing::info!(instance = %instance.id, "outbox of a departed writer drained");
            }
        }
        Ok(())
    }

    /// Relays one outbox key (a per-event key or a shard of an earlier layout), deleting it once
    /// empty. Returns whether the key still exists afterwards (or could not be read).
    async fn relay_shard(
        &self,
        key: &str,
        cutoff: DateTime<Utc>,
        report: &mut RelayReport,
    ) -> bool {
        let current = match self.repository.outbox_shard(key).await {
            Ok(None) => return false,
            Ok(Some(current)) => current,
            Err(error) => {
                report.failed += 1;
                tracing::warn!(%error, key, "outbox relay could not read a shard; will retry");
                return true;
            }
        };
        let mut done = HashSet::new();
        let mut published = HashSet::new();
        let mut verified = HashSet::new();
        for entry in &current.entries {
            if entry.recorded_at > cutoff {
                report.kept += 1;
                continue;
            }
            match self.settle(entry, entry.committed, report).await {
                Settled::Published => {
                    done.insert(entry.event_id);
                    published.insert(entry.event_id);
                }
                Settled::Discarded => {
                    done.insert(entry.event_id);
                }
                // Proven committed: the next pass need not read the task again.
                Settled::PublishFailed if !entry.committed => {
                    verified.insert(entry.event_id);
                }
                Settled::PublishFailed | Settled::Unread | Settled::Unproven => {}
            }
        }
        if !done.is_empty() {
            let finished: Vec<&OutboxEntry> = current
                .entries
                .iter()
                .filter(|e| done.contains(&e.event_id))
                .collect();
            if let Err(error) = self.finish(&finished, &published).await {
                // Kept for the next pass, which publishes the committed ones again (consumers
                // deduplicate) and projects them then.
                report.failed += 1;
                tracing::warn!(%error, key, "outbox relay could not project or release what it settled; will retry");
                verified.extend(published.iter().copied());
                done.clear();
            }
        }
        if done.is_empty() && verified.is_empty() && !current.entries.is_empty() {
            return true;
        }
        let edit = |shard: &mut OutboxShard| {
            let before = shard.entries.len();
            shard.entries.retain(|e| !done.contains(&e.event_id));
            let mut changed = shard.entries.len() != before;
            for entry in &mut shard.entries {
                if verified.contains(&entry.event_id) && !entry.committed {
                    entry.committed = true;
                    changed = true;
                }
            }
            changed || shard.entries.is_empty()
        };
        match self.repository.rewrite_outbox_shard(key, true, edit).await {
            Ok(exists) => exists,
            Err(error) => {
                report.failed += 1;
                tracing::warn!(%error, key, "outbox relay could not rewrite a shard; will retry");
                true
            }
        }
    }

    /// Before a departed writer's settled entries are deleted: projects the committed ones
    /// (those in `published`) into their owners' index, and settles the slots of all of them,
    /// so a crash between a commit and its projection loses no index entry and no slot.
    async fn finish(
        &self,
        entries: &[&OutboxEntry],
        published: &HashSet<Uuid>,
    ) -> Result<(), StoreError> {
        let mut changed = Vec::new();
        let mut uses = Vec::new();
        for entry in entries {
            let owner = match entry.user_id {
                Some(owner) => Some(owner),
                // An entry of an earlier release: its record names the owner, if it still exists.
                None => self
                    .repository
                    .get(entry.task_id)
                    .await?
                    .map(|record| record.task.user_id),
            };
            let Some(owner) = owner else { continue };
            if published.contains(&entry.event_id) {
                changed.push((owner, entry.task_id));
            }
            if let Some(slot) = entry.slot {
                uses.push(SlotUse {
                    user_id: owner,
                    task_id: entry.task_id,
                    slot,
                });
            }
        }
        let projected = self.repository.project(&changed).await?;
        if let Some((_, task)) = changed.iter().find(|(_, t)| !projected.contains(t)) {
            return Err(StoreError::Key {
                key: format!("index bucket of task {task}"),
                message: "the projection lost a race; retried by the next pass".into(),
            });
        }
        self.repository.release_slots(&uses).await
    }

    /// Judges one entry (from `known_committed`, else from its task's record) and publishes it
    /// when its change committed, counting the outcome in `report`. Both the process's own
    /// entries and a departed writer's keys go through here; the callers only keep their books.
    async fn settle(
        &self,
        entry: &OutboxEntry,
        known_committed: bool,
        report: &mut RelayReport,
    ) -> Settled {
        let verdict = if known_committed {
            Verdict::Committed
        } else {
            match self.verdict(entry).await {
                Ok(verdict) => verdict,
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(%error, event_id = %entry.event_id,
                        "outbox relay could not read the task of an entry; will retry");
                    return Settled::Unread;
                }
            }
        };
        match verdict {
            Verdict::Committed => match self.send(entry).await {
                Ok(()) => {
                    metrics::counter!("task_api_events_published_total", "path" => "relay", "topic" => entry.topic.clone()).increment(1);
                    tracing::info!(event_id = %entry.event_id, topic = %entry.topic,
                        task_id = %entry.task_id, version = entry.version, "outbox relay published an event");
                    report.published += 1;
                    Settled::Published
                }
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(%error, event_id = %entry.event_id,
                        "outbox relay could not publish; will retry");
                    Settled::PublishFailed
                }
            },
            Verdict::NotCommitted => {
                metrics::counter!("task_api_outbox_discarded_total").increment(1);
                tracing::warn!(event_id = %entry.event_id, topic = %entry.topic,
                    task_id = %entry.task_id, version = entry.version,
                    "outbox entry of a change that never committed; discarded");
                report.discarded += 1;
                Settled::Discarded
            }
            Verdict::Unproven => {
                metrics::counter!("task_api_outbox_unproven_total").increment(1);
                tracing::error!(event_id = %entry.event_id, task_id = %entry.task_id,
                    version = entry.version,
                    "outbox entry older than its task's recorded history and never confirmed \
                     by its writer; kept unpublished");
                report.unproven += 1;
                Settled::Unproven
            }
        }
    }

    /// Whether the change behind an entry its writer never confirmed is in its task's record.
    /// The record lists its last `RECENT_EVENTS` events: an entry older than that window, of a
    /// task changed that often since, cannot be told from a phantom whose transaction lost its
    /// etag check. Such an entry is [`Verdict::Unproven`]: kept, and never published. A live writer
    /// knows its own entries' outcomes, so this needs a writer that died right after its commit
    /// and a task changed `RECENT_EVENTS` times before its lease ran out.
    async fn verdict(&self, entry: &OutboxEntry) -> Result<Verdict, StoreError> {
        Ok(match self.repository.get(entry.task_id).await? {
            Some(record) if record.has_committed(entry.event_ref()) => Verdict::Committed,
            Some(record)
                if record
                    .oldest_recorded_version()
                    .is_some_and(|oldest| entry.version < oldest) =>
            {
                Verdict::Unproven
            }
            Some(_) => Verdict::NotCommitted,
            // The task never existed (its creation did not commit) or its tombstone expired.
            None => Verdict::NotCommitted,
        })
    }

    /// Runs [`Outbox::relay_once`] now and every `interval` until `stop` resolves.
    pub async fn run_relay(
        self,
        interval: Duration,
        grace: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            match self.relay_once(grace).await {
                Ok(report) if report.published + report.discarded + report.failed > 0 => {
                    tracing::info!(?report, "outbox relay pass");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "outbox relay pass failed; will retry"),
            }
        }
    }
}
