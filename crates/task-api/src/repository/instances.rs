//! The outbox writers' registry and leases: `outbox-instances` lists every writer that may have
//! shards (with its shard count), and `outbox-lease:{id}` exists, with a TTL, while that writer
//! renews it. A listed writer without a lease is gone, and other replicas drain its shards.
//! `outbox-range:{id}` holds the range of event numbers the writer's per-event keys may have
//! ([`EventRange`]), which is how a replica finds the keys of a writer that died. What the lease
//! allows is [`crate::outbox`]'s business; this module only stores it.

use std::collections::HashSet;
use std::time::Duration;

use dapr_http::{DaprError, SaveItem, TransactionOp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::{INSTANCES_KEY, lease_key, outbox_range_key};
use super::outbox_shard::{OutboxEntry, OutboxShard};
use super::{StoreError, TaskRepository, Versioned};

/// One registered outbox writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: Uuid,
    /// How many shards of the earlier layout it wrote (`OUTBOX_SHARDS` of that process); 0 for
    /// a writer of per-event keys, whose keys its [`EventRange`] finds.
    #[serde(default)]
    pub shards: u32,
}

/// The value of `outbox-instances`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Registry {
    #[serde(default)]
    instances: Vec<Instance>,
}

/// The lease's value; only its presence matters, the id makes a dump readable.
#[derive(Serialize)]
struct LeaseValue {
    instance: Uuid,
}

impl TaskRepository {
    /// Writes (or renews) the lease of `instance`, expiring after `ttl`.
    pub async fn save_lease(&self, instance: Uuid, ttl: Duration) -> Result<(), DaprError> {
        let item = SaveItem::new(lease_key(instance), &LeaseValue { instance })?.ttl(ttl);
        self.dapr.save_state(&self.store, &[item]).await
    }

    /// The ids among `ids` whose lease exists.
    pub async fn leased(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| lease_key(*id)).collect();
        let items = self
            .dapr
            .get_bulk_state::<serde_json::Value>(&self.store, &keys)
            .await?;
        let mut alive = HashSet::new();
        for (id, item) in ids.iter().zip(items) {
            if let Some(message) = item.error {
                return Err(StoreError::Key {
                    key: item.key,
                    message,
                });
            }
            if item.value.is_some() {
                alive.insert(*id);
            }
        }
        Ok(alive)
    }

    /// Every registered writer.
    pub async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        Ok(self
            .dapr
            .get_state::<Registry>(&self.store, INSTANCES_KEY)
            .await?
            .map(|entry| entry.value.instances)
            .unwrap_or_default())
    }

    /// Adds `instance` to the registry unless it is listed.
    pub async fn register(&self, instance: Instance) -> Result<(), StoreError> {
        self.edit_registry(|instances| {
            if instances.iter().any(|i| i.id == instance.id) {
                false
            } else {
                instances.push(instance);
                true
            }
        })
        .await
    }

    /// Removes `id` from the registry (its shards are drained).
    pub async fn unregister(&self, id: Uuid) -> Result<(), StoreError> {
        self.edit_registry(|instances| {
            let before = instances.len();
            instances.retain(|i| i.id != id);
            instances.len() != before
        })
        .await
    }

    /// Etag-checked read-modify-write of the registry, retried on conflict (replicas register
    /// at start-up and drain each other's leftovers at the same time).
    async fn edit_registry(
        &self,
        mut edit: impl FnMut(&mut Vec<Instance>) -> bool,
    ) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut current = match self
                .dapr
                .get_state::<Registry>(&self.store, INSTANCES_KEY)
                .await?
            {
                Some(entry) => Versioned {
                    value: entry.value,
                    etag: entry.etag,
                },
                None => Versioned::default(),
            };
            if !edit(&mut current.value.instances) {
                return Ok(());
            }
            let item = current.write(INSTANCES_KEY.to_owned(), &current.value)?;
            match self.dapr.save_state(&self.store, &[item]).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_write_conflict() => self.back_off(attempt).await?,
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// The event numbers an outbox writer may have used, `[low, high)`: every per-event key it wrote
/// and has not deleted is numbered in it. The writer raises `high` before it uses a number past
/// it, and raises `low` once every key below it is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRange {
    pub low: u64,
    pub high: u64,
}

impl TaskRepository {
    /// Writer `instance`'s event range (`None`: it never wrote one, or it was drained).
    pub async fn event_range(&self, instance: Uuid) -> Result<Option<EventRange>, StoreError> {
        Ok(self
            .dapr
            .get_state::<EventRange>(&self.store, &outbox_range_key(instance))
            .await?
            .map(|entry| entry.value))
    }

    /// Saves writer `instance`'s event range; only that writer (or, once its lease is gone, the
    /// replica draining it) writes it, so no etag.
    pub async fn save_event_range(
        &self,
        instance: Uuid,
        range: EventRange,
    ) -> Result<(), DaprError> {
        let item = SaveItem::new(outbox_range_key(instance), &range)?;
        self.dapr.save_state(&self.store, &[item]).await
    }

    /// Deletes writer `instance`'s event range once its keys are drained.
    pub async fn delete_event_range(&self, instance: Uuid) -> Result<(), DaprError> {
        self.dapr
            .delete_state(&self.store, &outbox_range_key(instance), None)
            .await
    }

    /// Writes one outbox entry under its per-event key, marked committed, retried with backoff
    /// on conflicts and transient failures up to `CONFLICT_RETRIES` times.
    pub async fn save_outbox_entry(
        &self,
        key: &str,
        entry: &OutboxEntry,
    ) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let item = SaveItem::new(key.to_owned(), &OutboxShard::one(entry))?;
            match self.dapr.save_state(&self.store, &[item]).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_write_conflict() || error.is_transient() => {
                    self.back_off(attempt).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Deletes `keys` (unconditionally) in transactions of at most [`DELETE_BATCH`] keys each.
    pub async fn delete_keys(&self, keys: &[String]) -> Result<(), DaprError> {
        for batch in keys.chunks(DELETE_BATCH) {
            let ops: Vec<TransactionOp> = batch
                .iter()
                .map(|key| TransactionOp::Delete {
                    key: key.clone(),
                    etag: None,
                })
                .collect();
            self.dapr.transact_state(&self.store, &ops).await?;
        }
        Ok(())
    }
}

/// How many keys one clean-up transaction deletes; far inside the sidecar's request limit.
pub const DELETE_BATCH: usize = 512;
