//! The outbox writers' registry and leases: `outbox-instances` lists every writer that may have
//! shards (with its shard count), and `outbox-lease:{id}` exists, with a TTL, while that writer
//! renews it. A listed writer without a lease is gone, and other replicas drain its shards.
//! What the lease allows is [`crate::outbox`]'s business; this module only stores it.

use std::collections::HashSet;
use std::time::Duration;

use dapr_http::{DaprError, SaveItem};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::{INSTANCES_KEY, lease_key};
use super::{StoreError, TaskRepository, Versioned};

/// One registered outbox writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: Uuid,
    /// How many shards it writes (`OUTBOX_SHARDS` of that process).
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
