//! One email per event: a ledger of claims and sent marks in the worker's own Dapr state.
//!
//! Delivery is at least once, and several replicas (or the sidecar's concurrent redeliveries)
//! may hold the same event at once. Before sending, an attempt *claims* the event by creating
//! `email:{event_id}`; only one writer can create the key. After the mail server accepts the
//! message the claim becomes a *sent mark* (saved with the claim's etag, so a claim that was
//! taken over is not overwritten), which is what later redeliveries find.
//!
//! A batch of events is claimed in one state transaction ([`Ledger::claim_batch`]) whose result
//! says who won, without reading the claims back:
//! * Each claim is an upsert with an etag no stored version can equal ([`CREATE_ONLY_ETAG`]).
//!   Dapr's Redis store writes a key whose etag does not match only when the key has no version
//!   yet (components-contrib `state/redis/redis.go`, the set script behind `setValue`), so the
//!   upsert creates the key or fails; a first-write upsert *without* an etag would not do: in a
//!   transaction it carries no first-write marker and overwrites an existing claim.
//! * A created key's version is 1 (the script's `HINCRBY` on a key that had none), so a claim
//!   that went through holds etag `"1"`: the etag the sent mark and a release need.
//! * A transaction that succeeds therefore means every claim is ours. One that fails means at
//!   least one key existed (a redelivery of a sent email, or another attempt in flight); Redis
//!   runs the transaction as a `MULTI` without rollback (`StateStore.Multi`), so the other claims
//!   went through. Only then are the keys read (one bulk read) to tell, per event, our claim from
//!   a sent mark or another attempt's claim; a key found absent means the store failed, and
//!   that event's delivery is retried.
//!
//! Claims carry the *sent* mark's TTL in the store, not `CLAIM_TTL`: Redis applies a
//! transaction's `EXPIRE` even when the upsert before it failed, so a claim that fails on an
//! existing sent mark pushes that mark's expiry out to a full `SENT_TTL` rather than cutting it
//! down to `CLAIM_TTL` (which would let a later redelivery send again). `CLAIM_TTL` is enforced
//! from the claim's own timestamp instead: a claim still `sending` after `CLAIM_TTL` belongs to an
//! attempt that died mid-send, and the next attempt takes it over with its etag (see
//! [`Ledger::claim_batch`]). Until then it blocks other attempts. A transient send failure
//! releases the claim at once so the retry does not wait.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dapr_http::{DaprClient, DaprError, SaveItem, TransactionOp};
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

/// Why an event could not be claimed (the store failed or could not be read); worth a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ClaimError(String);

/// Claims and marks in the state store.
#[derive(Debug, Clone)]
pub struct Ledger {
    dapr: DaprClient,
    store: String,
    claim_ttl: Duration,
    sent_ttl: Duration,
}

/// The etag of every claim upsert: an integer (Dapr's Redis store parses etags as integers) that
/// no stored version equals, since versions count up from 1.
pub const CREATE_ONLY_ETAG: &str = "-1";

/// The etag of a key the claim created (its first version).
const CREATED_ETAG: &str = "1";

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

    /// Tries to claim `event_id` for sending (a batch of one).
    pub async fn claim(&self, event_id: Uuid) -> Result<Claim, ClaimError> {
        self.claim_batch(&[event_id])
            .await
            .pop()
            .unwrap_or(Ok(Claim::InFlight))
    }

    /// Claims every event of `event_ids` in one transaction; one result per event, in order.
    ///
    /// When the transaction fails the keys are read once to sort the events out. An event whose
    /// key is absent even so was not claimed by anyone: the store failed (or rolled the
    /// transaction back), and its delivery is retried.
    pub async fn claim_batch(&self, event_ids: &[Uuid]) -> Vec<Result<Claim, ClaimError>> {
        let attempts: Vec<(Uuid, Record)> =
            event_ids.iter().map(|id| (*id, Record::claim())).collect();
        let ops = match attempts
            .iter()
            .map(|(id, record)| self.claim_op(*id, record))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(ops) => ops,
            Err(e) => return fail_all(attempts.len(), &e),
        };
        let Err(failed) = self.dapr.transact_state(&self.store, &ops).await else {
            return attempts
                .into_iter()
                .map(|(id, record)| {
                    Ok(Claim::Acquired(ClaimToken {
                        key: key_of(id),
                        claim_id: record.claim_id,
                        etag: CREATED_ETAG.to_owned(),
                    }))
                })
                .collect();
        };
        let keys: Vec<String> = attempts.iter().map(|(id, _)| key_of(*id)).collect();
        let found = match self.dapr.get_bulk_state::<Record>(&self.store, &keys).await {
            Ok(found) if found.len() == keys.len() => found,
            Ok(_) | Err(_) => return fail_all(attempts.len(), &failed),
        };
        let mut results = Vec::with_capacity(attempts.len());
        for ((id, ours), item) in attempts.into_iter().zip(found) {
            results.push(match (item.value, item.etag, item.error) {
                (_, _, Some(error)) => Err(ClaimError(format!(
                    "state key `{}` could not be read: {error}",
                    item.key
                ))),
                (Some(record), Some(etag), None) if record.claim_id == ours.claim_id => {
                    Ok(Claim::Acquired(ClaimToken {
                        key: item.key,
                        claim_id: ours.claim_id,
                        etag,
                    }))
                }
                (Some(record), etag, None) if self.is_abandoned(&record) => {
                    Ok(self.take_over(id, &record, etag).await)
                }
                (Some(record), _, None) => Ok(classify(record)),
                (None, _, None) => Err(ClaimError(format!(
                    "the claim transaction failed: {failed}"
                ))),
            });
        }
        results
    }

    /// The transaction operation that creates `event_id`'s claim, or fails if the key exists.
    fn claim_op(&self, event_id: Uuid, record: &Record) -> Result<TransactionOp, DaprError> {
        Ok(TransactionOp::Upsert(
            SaveItem::new(key_of(event_id), record)?
                .etag(Some(CREATE_ONLY_ETAG))
                .first_write()
                .ttl(self.sent_ttl),
        ))
    }

    /// Takes over a claim that outlived `CLAIM_TTL`: the owner died mid-send. The takeover is
    /// saved with the abandoned claim's etag, so of several attempts taking it over only one
    /// wins; the claim is read back to learn its etag (this path is rare: only after a crash).
    async fn take_over(&self, event_id: Uuid, existing: &Record, etag: Option<String>) -> Claim {
        tracing::warn!(%event_id, claimed_at = %existing.updated_at, "taking over an abandoned claim");
        let key = key_of(event_id);
        let record = Record::claim();
        let Ok(item) = SaveItem::new(key.clone(), &record) else {
            return Claim::InFlight;
        };
        let item = item.etag(etag).first_write().ttl(self.sent_ttl);
        if self.dapr.save_state(&self.store, &[item]).await.is_err() {
            return Claim::InFlight;
        }
        match self.dapr.get_state::<Record>(&self.store, &key).await {
            Ok(Some(entry)) if entry.value.claim_id == record.claim_id => match entry.etag {
                Some(etag) => Claim::Acquired(ClaimToken {
                    key,
                    claim_id: record.claim_id,
                    etag,
                }),
                None => Claim::InFlight,
            },
            Ok(Some(entry)) => classify(entry.value),
            Ok(None) | Err(_) => Claim::InFlight,
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

impl Record {
    /// A fresh claim by this attempt.
    fn claim() -> Self {
        Self {
            status: Status::Sending,
            claim_id: Uuid::new_v4(),
            updated_at: Utc::now(),
            subject: None,
        }
    }
}

/// `count` failures with `error`'s description.
fn fail_all(count: usize, error: &DaprError) -> Vec<Result<Claim, ClaimError>> {
    (0..count)
        .map(|_| Err(ClaimError(error.to_string())))
        .collect()
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
