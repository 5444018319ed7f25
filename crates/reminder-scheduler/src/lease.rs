//! The scanner lease: one replica at a time scans and publishes reminders.
//!
//! The lease is the state key `scheduler-lease`, value `{holder, ...}`, always written with
//! `first-write` concurrency and a TTL:
//! * acquire: when the key is absent (never taken, released, or expired, which reads as absent),
//!   save it without an etag. If two replicas race, the first-write marker of the winner's key
//!   makes the loser's save fail.
//! * renew: read it; if we are still the holder, save it with the etag read and the TTL again (a
//!   write without a TTL would leave the old expiry in force). If the key expired and someone
//!   else took it, the holder or the etag differs and the renewal fails.
//! * release (shutdown): delete it with the etag read, only if we hold it.
//!
//! The holder also keeps a local deadline, measured on the monotonic clock from *before* the
//! write that set the TTL, so it is never later than the store's expiry. A holder that pauses
//! past its TTL (GC, SIGSTOP, a slow node) sees its deadline passed when it wakes and stops
//! before publishing anything more; its next renewal then fails on the holder/etag check.
//! A publish already in flight when the pause began can still land after the takeover; the
//! deterministic reminder id makes that duplicate harmless downstream.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::Error;
use crate::store::{Store, Ttl};

/// The lease's state key.
pub const LEASE_KEY: &str = "scheduler-lease";

/// The stored lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    /// The replica holding it.
    pub holder: String,
    /// When it last acquired or renewed it (RFC 3339; informational).
    pub renewed_at: String,
}

/// What a lease attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// We hold it (just acquired or renewed).
    Held,
    /// Another replica holds it.
    HeldElsewhere,
}

/// One replica's view of the lease.
#[derive(Debug)]
pub struct Lease {
    store: Store,
    holder: String,
    ttl: Duration,
    valid_until: Mutex<Option<Instant>>,
    /// When the lease seen held elsewhere should expire if not renewed (its `renewed_at` plus
    /// the TTL, by the wall clock), so a waiting replica can try right then.
    expected_expiry: Mutex<Option<DateTime<Utc>>>,
}

impl Lease {
    pub fn new(store: Store, holder: impl Into<String>, ttl: Duration) -> Self {
        Self {
            store,
            holder: holder.into(),
            ttl,
            valid_until: Mutex::new(None),
            expected_expiry: Mutex::new(None),
        }
    }

    /// This replica's holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// True while the local deadline has not passed.
    pub fn is_held(&self) -> bool {
        self.deadline().is_some_and(|until| Instant::now() < until)
    }

    fn deadline(&self) -> Option<Instant> {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn set_deadline(&self, until: Option<Instant>) {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = until;
    }

    /// When the lease last seen held by another replica expires unless renewed (wall clock;
    /// replicas' clocks are assumed roughly in sync, and a wrong guess only costs a read).
    pub fn expected_expiry(&self) -> Option<DateTime<Utc>> {
        *self
            .expected_expiry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn set_expected_expiry(&self, value: Option<&LeaseValue>) {
        let expiry = value.and_then(|v| {
            let renewed = DateTime::parse_from_rfc3339(&v.renewed_at).ok()?;
            let ttl = chrono::Duration::from_std(self.ttl).ok()?;
            Some(renewed.with_timezone(&Utc) + ttl)
        });
        *self
            .expected_expiry
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = expiry;
    }

    /// Acquires the lease if it is free, or renews it if we hold it.
    pub async fn acquire_or_renew(&self) -> Result<LeaseState, Error> {
        // Measured before the write, so the local deadline ends no later than the store's TTL.
        let started = Instant::now();
        let current = self.store.read::<LeaseValue>(LEASE_KEY).await?;
        let etag = match &current.value {
            None => None,
            // Renew only while our own deadline holds: past it, the key may have expired and
            // been taken and released by another replica, and a fresh key's etag may repeat an
            // old one.
            Some(value) if value.holder == self.holder && self.is_held() => current.etag.as_deref(),
            Some(other) => {
                // Someone else's, or ours after a lapse: only a fresh acquisition once it has
                // expired is safe.
                self.set_deadline(None);
                self.set_expected_expiry(Some(other));
                return Ok(LeaseState::HeldElsewhere);
            }
        };
        let value = LeaseValue {
            holder: self.holder.clone(),
            renewed_at: Utc::now().to_rfc3339(),
        };
        match self
            .store
            .write(LEASE_KEY, &value, etag, Some(Ttl::Expire(self.ttl)))
            .await
        {
            Ok(()) => {
                // A little margin for the time the store took to apply the write.
                self.set_deadline(Some(started + self.ttl.mul_f64(0.9)));
                Ok(LeaseState::Held)
            }
            Err(error) if error.is_write_conflict() => {
                self.set_deadline(None);
                Ok(LeaseState::HeldElsewhere)
            }
            // Keep the local deadline: it runs out on its own if the store stays unreachable.
            Err(error) => Err(error.into()),
        }
    }

    /// Gives the lease up (on shutdown) so another replica can take over at once.
    pub async fn release(&self) -> Result<(), Error> {
        let held = self.deadline().is_some();
        self.set_deadline(None);
        if !held {
            return Ok(());
        }
        let current = self.store.read::<LeaseValue>(LEASE_KEY).await?;
        if current.value.is_some_and(|v| v.holder == self.holder) {
            match self.store.remove(LEASE_KEY, current.etag.as_deref()).await {
                Ok(()) => {}
                // Taken over meanwhile: nothing of ours to release.
                Err(error) if error.is_write_conflict() => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Forgets the lease locally without releasing it in the store, as a crashed or paused
    /// replica would (tests).
    pub fn abandon(&self) {
        self.set_deadline(None);
    }
}
