//! State access with optimistic concurrency: every write of a key this service shares between
//! concurrent handlers and replicas is a read, a change, and a save with the etag read.
//!
//! Every save uses `first-write` concurrency. With `state.redis` semantics that is what makes the
//! first write of a key safe too: once a key carries the first-write marker, a save without an
//! etag fails instead of overwriting, so two writers that both saw "absent" cannot both win.
//! Such a failed first write surfaces as 500 `ERR_STATE_SAVE` (not 409), so it counts as a
//! conflict here.

use std::time::Duration;

use dapr_http::{DaprClient, DaprError, SaveItem};
use rand::Rng as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// How many times a read-modify-write is tried before the event is handed back for redelivery.
pub const MAX_ATTEMPTS: u32 = 24;

/// What a read-modify-write decides after seeing the current value.
#[derive(Debug)]
pub enum Change<T> {
    /// Nothing to write.
    Keep,
    /// Write this value.
    Save(T),
    /// Delete the key.
    Delete,
}

/// The state store this service writes, as seen through its sidecar.
#[derive(Debug, Clone)]
pub struct Store {
    pub dapr: DaprClient,
    pub name: String,
}

/// A value read with its etag.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: Option<T>,
    pub etag: Option<String>,
}

impl Store {
    pub fn new(dapr: DaprClient, name: impl Into<String>) -> Self {
        Self {
            dapr,
            name: name.into(),
        }
    }

    /// Reads `key` with its etag (no value and no etag when absent).
    pub async fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Versioned<T>, DaprError> {
        Ok(match self.dapr.get_state::<T>(&self.name, key).await? {
            Some(entry) => Versioned {
                value: Some(entry.value),
                etag: entry.etag,
            },
            None => Versioned {
                value: None,
                etag: None,
            },
        })
    }

    /// Saves `value` under `key` if the key is still at `etag` (or still absent when `None`).
    pub async fn write<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        etag: Option<&str>,
        ttl: Option<Ttl>,
    ) -> Result<(), DaprError> {
        let mut item = SaveItem::new(key, value)?.etag(etag).first_write();
        match ttl {
            Some(Ttl::Expire(ttl)) => item = item.ttl(ttl),
            // Redis keeps an earlier expiry unless the write says otherwise (-1 = persist).
            Some(Ttl::Persist) => item = item.metadata("ttlInSeconds", "-1"),
            None => {}
        }
        self.dapr.save_state(&self.name, &[item]).await
    }

    /// Deletes `key` if it is still at `etag`.
    pub async fn remove(&self, key: &str, etag: Option<&str>) -> Result<(), DaprError> {
        self.dapr.delete_state(&self.name, key, etag).await
    }

    /// Reads `key`, lets `change` decide, writes with the etag read; on a conflict reads again.
    /// Returns the value written (or kept), `None` when deleted or absent.
    pub async fn update<T, F>(&self, key: &str, mut change: F) -> Result<Option<T>, Error>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(Option<T>) -> Change<T>,
    {
        for attempt in 1..=MAX_ATTEMPTS {
            let current = self.read::<T>(key).await?;
            let result = match change(current.value.clone()) {
                Change::Keep => return Ok(current.value),
                Change::Save(value) => self
                    .write(key, &value, current.etag.as_deref(), None)
                    .await
                    .map(|()| Some(value)),
                Change::Delete if current.value.is_none() => return Ok(None),
                Change::Delete => self
                    .remove(key, current.etag.as_deref())
                    .await
                    .map(|()| None),
            };
            match result {
                Ok(written) => return Ok(written),
                Err(error) if error.is_write_conflict() => backoff(attempt).await,
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::Contended {
            key: key.to_owned(),
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// The expiry to set with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    Expire(Duration),
    /// Remove an expiry set by an earlier write.
    Persist,
}

/// A short jittered pause before retrying a lost race, growing with the attempt number.
pub async fn backoff(attempt: u32) {
    let bound = 2u64.saturating_pow(attempt.min(6)).min(50);
    let millis = rand::rng().random_range(0..=bound);
    tokio::time::sleep(Duration::from_millis(millis)).await;
}
