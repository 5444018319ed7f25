//! This process's identity as an outbox writer: the instance id its entries' keys are named after, and
//! the lease that tells other replicas it is alive (see "Writers own their keys" in
//! [`crate::outbox`]).
//!
//! The rule that keeps an id's keys single-writer: the process writes under an id only while it knows
//! its lease is valid, judged on its own clock from when the last renewal was *sent*, and ends
//! that belief a third of the TTL before the store expires the key. Once the belief ends, the id
//! is never written again: a later renewal takes a fresh id, because another replica may already
//! be draining the old one's entries.

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::repository::{Instance, StoreError, TaskRepository};

/// The lease state, behind the renewal lock.
#[derive(Debug)]
struct Held {
    id: Uuid,
    valid_until: Option<Instant>,
}

/// This process's writer id and lease; shared by every clone of the outbox.
#[derive(Debug)]
pub(super) struct Lease {
    repository: TaskRepository,
    ttl: Duration,
    /// Renewals take turns; a request that finds the lease stale renews it here.
    held: tokio::sync::Mutex<Held>,
    /// A copy of the id and validity readable without waiting for a renewal in progress.
    current: std::sync::Mutex<(Uuid, Option<Instant>)>,
}

impl Lease {
    /// A lease of `ttl` (at least one second, the store's TTL unit). Nothing is written until
    /// the first [`Lease::id`] or [`Lease::renew`].
    pub(super) fn new(repository: TaskRepository, ttl: Duration) -> Self {
        let id = Uuid::now_v7();
        Self {
            repository,
            ttl: ttl.max(Duration::from_secs(1)),
            held: tokio::sync::Mutex::new(Held {
                id,
                valid_until: None,
            }),
            current: std::sync::Mutex::new((id, None)),
        }
    }

    /// The id taken at construction, before any renewal.
    pub(super) fn initial_id(&self) -> Uuid {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }

    /// How often the lease is renewed: well inside the part of the TTL the process trusts.
    pub(super) fn renew_interval(&self) -> Duration {
        self.ttl / 4
    }

    /// The id to write under, if the lease is known valid now.
    pub(super) fn valid_id(&self) -> Option<Uuid> {
        let (id, until) = *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        until.filter(|until| *until > Instant::now()).map(|_| id)
    }

    /// The id to write under, renewing the lease first when it is not known valid.
    pub(super) async fn id(&self) -> Result<Uuid, StoreError> {
        match self.valid_id() {
            Some(id) => Ok(id),
            None => self.renew().await,
        }
    }

    /// Renews the lease (taking a fresh id if the old one's validity ended) and makes sure the
    /// id is registered, so other replicas find its entries if this process dies.
    pub(super) async fn renew(&self) -> Result<Uuid, StoreError> {
        let mut held = self.held.lock().await;
        let now = Instant::now();
        if held.valid_until.is_some_and(|until| until <= now) {
            let old = held.id;
            held.id = Uuid::now_v7();
            held.valid_until = None;
            tracing::warn!(%old, new = %held.id,
                "outbox lease lapsed; writing under a new instance id");
        }
        let sent = Instant::now();
        self.repository.save_lease(held.id, self.ttl).await?;
        // Registered after the lease exists, so no replica sees the id listed without a lease
        // and drains it while this process starts writing.
        self.repository
            .register(Instance {
                id: held.id,
                // Per-event keys only: its `outbox-range` says where they are.
                shards: 0,
            })
            .await?;
        let until = sent + self.ttl * 2 / 3;
        held.valid_until = Some(until);
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (held.id, Some(until));
        Ok(held.id)
    }
}
