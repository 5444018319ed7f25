//! The outbox's background upkeep in this process: the lease keeper, which renews the writer's
//! lease, and the cleaner, which writes what the process learned about its shards' entries
//! (published ones removed, committed ones marked) into shards no transaction wrote since.

use std::collections::HashSet;
use std::time::Duration;

use uuid::Uuid;

use super::{Outbox, ShardId};

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

    /// Every `interval`, writes the pending marks of this process's shards, until `stop` turns
    /// true (a last sweep runs then). Whatever is missed, the relay handles.
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

    /// Writes the marks of every shard that has some.
    async fn sweep(&self) {
        let shards: Vec<ShardId> = self.marks().keys().copied().collect();
        let me = self.lease.valid_id();
        for shard in shards {
            if Some(shard.0) != me {
                // The lease under which these were written lapsed: this process never writes
                // that id again, and whoever drains its shards judges the entries on its own.
                self.marks().remove(&shard);
                continue;
            }
            let turn = self.lock_shard(shard.1).await;
            let mut applied: (HashSet<Uuid>, HashSet<Uuid>) = Default::default();
            let result = self
                .repository
                .rewrite_outbox_shard(&Self::key_of(shard), false, |s| {
                    let before = (
                        s.entries.len(),
                        s.entries.iter().filter(|e| e.committed).count(),
                    );
                    applied = self.apply_marks(shard, &mut s.entries);
                    let after = (
                        s.entries.len(),
                        s.entries.iter().filter(|e| e.committed).count(),
                    );
                    before != after
                })
                .await;
            drop(turn);
            match result {
                Ok(_) => self.forget(shard, &applied),
                Err(error) => tracing::warn!(%error, key = %Self::key_of(shard),
                    "could not clean up an outbox shard; will retry"),
            }
        }
    }
}
