//! One email per event: a ledger of claims and sent marks in the worker's own Dapr state.
//!
//! Delivery is at least once, and several replicas (or the sidecar's concurrent redeliveries)
//! may hold the same event at once. Before sending, an attempt *claims* the event by writing
//! `email:{event_id}` with `first-write` concurrency and a short TTL; only one writer can create
//! the key. After the mail server accepts the message the claim becomes a *sent mark* (saved with
//! the claim's etag, so a claim that expired and was taken over is not overwritten) with a long
//! TTL, which is what later redeliveries find.
//!
//! A claim that is never completed (the process died mid-send) blocks other attempts until its
//! TTL runs out; then a redelivery claims and sends. A claim found `sending` past its TTL (the
//! store's expiry was lost, see [`Ledger::claim`]) is taken over the same way. A transient
//! failure releases the claim at once so the retry does not wait for the TTL.
//!
//! With Redis semantics (which the local sidecar copies), a `first-write` save without an etag on
//! a key that was itself written with `first-write` fails with 500 `ERR_STATE_SAVE`, not 409, so a
//! failed claim is never taken as proof of a duplicate by its status code: the key is read back
//! to see whether it exists and what state it is in.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dapr_http::{DaprClient, DaprError, SaveItem};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// An attempt holds the claim and may be sending right now.
    Sending,
    /// The mail server accepted the message.
    Sent,
}

/// The value stored under `email:{event_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub status: Status,
    /// Unique per attempt: tells our own claim from someone else's when reading it back.
    pub claim_id: Uuid,
    #[serde(with = "events::envelope::rfc3339_micros")]
    pub updated_at: DateTime<Utc>,
    /// The subject sent (in a sent mark), to re-announce `notification-sent` identically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// A claim we hold; completing or releasing it consumes it.
#[derive(Debug)]
pub struct ClaimToken {
    key: String,
    claim_id: Uuid,
    etag: String,
}

/// The result of trying to claim an event.
#[derive(Debug)]
pub enum Claim {
    /// We hold the claim: send.
    Acquired(ClaimToken),
    /// The email was already sent (a redelivery): acknowledge without sending.
    AlreadySent(Record),
    /// Another attempt holds the claim right now: try again later.
    InFlight,
}

/// Claims and marks in the state store.
#[derive(Debug, Clone)]
pub struct Ledger {
    dapr: DaprClient,
    store: String,
    claim_ttl: Duration,
    sent_ttl: Duration,
}

/// The state key of an event.
pub fn key_of(event_id: Uuid) -> String {
    format!("email:{event_id}")
}

impl Ledger {
    pub fn new(dapr: DaprClient, store: String, claim_ttl: Duration, sent_ttl: Duration) -> Self {
        Self {
            dapr,
            store,
            claim_ttl,
            sent_ttl,
        }
    }

    /// Tries to claim `event_id` for sending.
    pub async fn claim(&self, event_id: Uuid) -> Result<Claim, DaprError> {
        let key = key_of(event_id);
        let claim_id = Uuid::new_v4();
        let record = Record {
            status: Status::Sending,
            claim_id,
            updated_at: Utc::now(),
            subject: None,
        };
        let item = SaveItem::new(key.clone(), &record)?
            .first_write()
            .ttl(self.claim_ttl);
        if let Err(save_error) = self.dapr.save_state(&self.store, &[item]).await {
            // 409 on some stores, 500 on Redis, or a real outage: the key itself tells which.
            let Some(existing) = self.dapr.get_state::<Record>(&self.store, &key).await? else {
                return Err(save_error);
            };
            if !self.is_abandoned(&existing.value) {
                return Ok(classify(existing.value));
            }
            // The claim outlived its TTL without expiring: Dapr's Redis store sets the expiry
            // with a separate command after the write, so a crash between the two leaves a
            // claim that never expires. Take it over with its etag; if another attempt got
            // there first the etag fails and that attempt is the one in flight.
            tracing::warn!(%event_id, claimed_at = %existing.value.updated_at,
                "taking over an abandoned claim");
            let takeover = SaveItem::new(key.clone(), &record)?
                .etag(existing.etag)
                .first_write()
                .ttl(self.claim_ttl);
            if self
                .dapr
                .save_state(&self.store, &[takeover])
                .await
                .is_err()
            {
                return Ok(Claim::InFlight);
            }
        }
        // The save returns no etag; read it back (and check the claim is ours: the key could
        // have expired and been claimed again in between, in theory).
        match self.dapr.get_state::<Record>(&self.store, &key).await? {
            Some(entry) if entry.value.claim_id == claim_id => match entry.etag {
                Some(etag) => Ok(Claim::Acquired(ClaimToken {
                    key,
                    claim_id,
                    etag,
                })),
                None => Err(DaprError::Unexpected {
                    status: 200,
                    code: String::new(),
                    message: format!("state key `{key}` was read without an etag"),
                }),
            },
            Some(entry) => Ok(classify(entry.value)),
            None => Ok(Claim::InFlight),
        }
    }

    /// A claim still `sending` after its TTL belongs to an attempt that died.
    fn is_abandoned(&self, record: &Record) -> bool {
        record.status == Status::Sending
            && chrono::Duration::from_std(self.claim_ttl)
                .is_ok_and(|ttl| record.updated_at + ttl < Utc::now())
    }

    /// Turns our claim into a sent mark. Fails with an etag conflict if the claim expired and
    /// another attempt took it over.
    pub async fn mark_sent(
        &self,
        token: &ClaimToken,
        subject: &str,
        sent_at: DateTime<Utc>,
    ) -> Result<(), DaprError> {
        let record = Record {
            status: Status::Sent,
            claim_id: token.claim_id,
            updated_at: sent_at,
            subject: Some(subject.to_owned()),
        };
        let item = SaveItem::new(token.key.clone(), &record)?
            .etag(Some(token.etag.clone()))
            .first_write()
            .ttl(self.sent_ttl);
        self.dapr.save_state(&self.store, &[item]).await
    }

    /// Gives the claim up (after a failed send) so a retry need not wait for its TTL. If this
    /// fails, the TTL frees the key anyway.
    pub async fn release(&self, token: ClaimToken) -> Result<(), DaprError> {
        self.dapr
            .delete_state(&self.store, &token.key, Some(&token.etag))
            .await
    }
}

fn classify(existing: Record) -> Claim {
    match existing.status {
        Status::Sent => Claim::AlreadySent(existing),
        Status::Sending => Claim::InFlight,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn record_wire_format_is_stable() {
        let r = Record {
            status: Status::Sent,
            claim_id: Uuid::nil(),
            updated_at: DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
                .unwrap()
                .to_utc(),
            subject: Some("New task: x".into()),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"status": "sent", "claim_id": Uuid::nil(),
                "updated_at": "2026-11-27T10:00:00.000000Z", "subject": "New task: x"})
        );
        assert!(matches!(classify(r.clone()), Claim::AlreadySent(_)));
        assert!(matches!(
            classify(Record {
                status: Status::Sending,
                ..r
            }),
            Claim::InFlight
        ));
        assert_eq!(
            key_of(Uuid::nil()),
            "email:00000000-0000-0000-0000-000000000000"
        );
    }
}
