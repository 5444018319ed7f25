//! The background work of the outbox: the relay, which publishes what requests left behind (a
//! crash, a failed publish) and discards what never committed, and the cleaner, which removes
//! published entries that no transaction swept.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use super::{Outbox, OutboxEntry};
use crate::repository::StoreError;

/// What one relay pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub published: usize,
    pub discarded: usize,
    pub kept: usize,
}

impl Outbox {
    /// Every `interval`, removes the published entries no transaction has removed yet, until
    /// `stop` turns true (a last sweep runs then). Whatever is missed, the relay cleans up.
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
            let pending: Vec<(u32, HashSet<Uuid>)> = self
                .published_map()
                .iter()
                .map(|(shard, ids)| (*shard, ids.clone()))
                .collect();
            for (shard, ids) in pending {
                match self.remove(shard, &ids).await {
                    Ok(()) => self.forget(shard, &ids),
                    Err(error) => tracing::warn!(%error, shard, count = ids.len(),
                        "could not remove published outbox entries; will retry"),
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// One relay pass over every shard: entries older than `grace` are published when their
    /// change committed and discarded when it did not, then removed.
    pub async fn relay_once(&self, grace: Duration) -> Result<RelayReport, StoreError> {
        let mut report = RelayReport::default();
        let cutoff =
            Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        for shard in 0..self.shards {
            let Some(current) = self.repository.outbox_shard(shard).await? else {
                continue;
            };
            let mut done = HashSet::new();
            for entry in &current.entries {
                if entry.recorded_at > cutoff {
                    report.kept += 1;
                    continue;
                }
                if self.committed(entry).await? {
                    self.send(entry).await?;
                    metrics::counter!("task_api_events_published_total", "path" => "relay", "topic" => entry.topic.clone()).increment(1);
                    tracing::info!(event_id = %entry.event_id, topic = %entry.topic,
                        task_id = %entry.task_id, version = entry.version, "outbox relay published an event");
                    report.published += 1;
                } else {
                    metrics::counter!("task_api_outbox_discarded_total").increment(1);
                    tracing::warn!(event_id = %entry.event_id, topic = %entry.topic,
                        task_id = %entry.task_id, version = entry.version,
                        "outbox entry of a change that never committed; discarded");
                    report.discarded += 1;
                }
                done.insert(entry.event_id);
            }
            if !done.is_empty() {
                self.remove(shard, &done).await?;
            }
        }
        Ok(report)
    }

    /// Whether the change behind `entry` is in its task's record.
    async fn committed(&self, entry: &OutboxEntry) -> Result<bool, StoreError> {
        Ok(match self.repository.get(entry.task_id).await? {
            Some(record) => {
                if record.has_committed(entry.event_ref()) {
                    true
                } else {
                    if record
                        .oldest_recorded_version()
                        .is_some_and(|oldest| entry.version < oldest)
                    {
                        tracing::error!(event_id = %entry.event_id, version = entry.version,
                            "outbox entry older than the task's recorded history; cannot prove it committed");
                    }
                    false
                }
            }
            // The task never existed (its creation did not commit) or its tombstone expired.
            None => false,
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
                Ok(report) if report.published + report.discarded > 0 => {
                    tracing::info!(?report, "outbox relay pass");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "outbox relay pass failed; will retry"),
            }
        }
    }
}
