//! The outbox's background upkeep in this process: the lease keeper, which renews the writer's
//! lease, and the cleaner, which deletes the keys of entries the process published (or whose
//! change did not commit) in batches, and keeps the stored event range tight.

use std::time::Duration;

use super::Outbox;
use super::book::Stage;

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

    /// Every `interval`, deletes the keys of this process's published and abandoned entries,
    /// until `stop` turns true (a last sweep runs then). Whatever is missed, the relay handles.
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

    /// Deletes, in as few transactions as [`crate::repository::DELETE_BATCH`] allows, the keys of every entry
    /// published or abandoned since the last sweep, then raises the stored `low` of the event
    /// range past them. One write for many requests, off their path.
    pub(super) async fn sweep(&self) {
        let done = self.entries_in(&[Stage::Published, Stage::Abandoned], None);
        if !done.is_empty() {
            let keys: Vec<String> = done.iter().map(|(_, p)| p.key.clone()).collect();
            match self.repository.delete_keys(&keys).await {
                Ok(()) => {
                    let abandoned = done
                        .iter()
                        .filter(|(_, p)| p.stage == Stage::Abandoned)
                        .count();
                    if abandoned > 0 {
                        metrics::counter!("task_api_outbox_discarded_total")
                            .increment(abandoned as u64);
                    }
                    let ids: Vec<_> = done.iter().map(|(id, _)| *id).collect();
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
}
