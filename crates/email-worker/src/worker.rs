//! Processing one trigger event: compose, wait for a send permit, claim (with the other events
//! of its batch, see [`crate::batch`]), send, mark, announce, and the outcome daprd gets.
//!
//! | situation | outcome | announced |
//! |---|---|---|
//! | sent | SUCCESS | `notification-sent` |
//! | already sent (redelivery) | SUCCESS, nothing sent | `notification-sent` again, same id |
//! | another attempt holds the claim | RETRY | |
//! | SMTP 4xx, refused, timeout; sidecar unavailable; template error | RETRY | |
//! | SMTP 5xx, invalid recipient | DROP (dead letter) | `notification-failed` |
//!
//! An announcement that cannot be published turns the outcome into RETRY: the redelivery finds
//! the sent mark, sends nothing and announces again (with the same event id).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dapr_http::{DaprClient, Outcome};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::compose::{ComposeError, Composer, Email, Notification};
use crate::counters;
use crate::ledger::{Claim, ClaimError, ClaimToken, Ledger, Record};
use crate::mailer::{Mailer, SendError};
use crate::notify;

/// Everything a delivery handler needs; shared by all deliveries.
#[derive(Debug)]
pub struct Worker {
    pub(crate) dapr: DaprClient,
    pub(crate) ledger: Ledger,
    pub(crate) composer: Composer,
    pub(crate) mailer: Mailer,
    /// Bounds the emails in flight (and so the SMTP connections) whatever the sidecar delivers.
    pub(crate) send_permits: Arc<Semaphore>,
    pub(crate) pubsub: String,
    pub(crate) app_id: String,
    /// Triggers older than this are acknowledged without an email (see [`crate::staleness`]).
    pub(crate) max_event_age: Duration,
}

/// Attempts at the sent mark before giving up on it (see "The one duplicate window").
const MARK_ATTEMPTS: u32 = 4;

impl Worker {
    /// Composes the email of `n`; a composition that fails is answered here.
    pub(crate) async fn compose(
        &self,
        n: &Notification,
        traceparent: Option<&str>,
    ) -> Result<Email, Outcome> {
        match self.composer.compose(n) {
            Ok(email) => Ok(email),
            Err(e @ (ComposeError::InvalidRecipient { .. } | ComposeError::Message(_))) => {
                Err(self
                    .give_up(n, &e.to_string(), "invalid_message", traceparent)
                    .await)
            }
            Err(e @ ComposeError::Template(_)) => {
                tracing::error!(event_id = %n.trigger_event_id, error = %e, "template error; will retry");
                counters::retried(n.kind, "template");
                Err(Outcome::Retry(e.to_string()))
            }
        }
    }

    /// Acts on the claim of `n`, taken while `permit` was held: sends when it is ours (the permit
    /// is held until the send ends), otherwise answers without sending.
    pub(crate) async fn after_claim(
        &self,
        n: &Notification,
        email: &Email,
        claim: Result<Claim, ClaimError>,
        permit: OwnedSemaphorePermit,
        traceparent: Option<&str>,
    ) -> Outcome {
        let kind = n.kind;
        let token = match claim {
            Ok(Claim::Acquired(token)) => token,
            Ok(Claim::AlreadySent(record)) => {
                drop(permit);
                return self.already_sent(n, record, traceparent).await;
            }
            Ok(Claim::InFlight) => {
                drop(permit);
                tracing::info!(event_id = %n.trigger_event_id, "another attempt is sending this email; retry later");
                counters::retried(kind, "in_flight");
                return Outcome::Retry("another attempt holds the claim".into());
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(event_id = %n.trigger_event_id, error = %e, "cannot claim the event; will retry");
                counters::retried(kind, "state");
                return Outcome::Retry(format!("claim failed: {e}"));
            }
        };
        let result = self.mailer.send(&email.message).await;
        drop(permit);

        match result {
            Ok(reply) => self.sent(n, email, token, &reply, traceparent).await,
            Err(SendError::Transient(reason)) => {
                tracing::warn!(event_id = %n.trigger_event_id, %reason, "send failed temporarily; will retry");
                self.release(token).await;
                counters::retried(kind, "smtp");
                Outcome::Retry(reason)
            }
            Err(SendError::Permanent(reason)) => {
                self.release(token).await;
                self.give_up(n, &reason, "rejected", traceparent).await
            }
        }
    }

    async fn sent(
        &self,
        n: &Notification,
        email: &Email,
        token: ClaimToken,
        reply: &str,
        traceparent: Option<&str>,
    ) -> Outcome {
        // The one duplicate window: from the moment the mail server accepts the message until the
        // sent mark below is stored. A crash (or a sidecar outage that outlasts the retries here)
        // inside it leaves only the claim, which expires after CLAIM_TTL; a redelivery after that
        // sends the email again. Nothing else runs inside the window (no publish, no logging
        // I/O before the mark), and the duplicate would carry the same Message-ID.
        let sent_at = Utc::now();
        let mut marked = self.ledger.mark_sent(&token, &email.subject, sent_at).await;
        let mut attempt = 1;
        while let Err(e) = &marked {
            if !e.is_transient() || attempt >= MARK_ATTEMPTS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            attempt += 1;
            marked = self.ledger.mark_sent(&token, &email.subject, sent_at).await;
        }
        counters::sent(n.kind);
        match &marked {
            Ok(()) => tracing::info!(
                event_id = %n.trigger_event_id, event_type = n.kind.as_str(), task_id = %n.task_id,
                %reply, "email sent"
            ),
            // Still acknowledged: answering RETRY would only make a duplicate more likely.
            Err(e) => tracing::error!(
                event_id = %n.trigger_event_id, error = %e,
                "email sent but the sent mark could not be stored; a redelivery after the claim expires would send it again"
            ),
        }
        self.announce_sent(n, &email.subject, sent_at, traceparent)
            .await
    }

    async fn already_sent(
        &self,
        n: &Notification,
        record: Record,
        traceparent: Option<&str>,
    ) -> Outcome {
        tracing::info!(event_id = %n.trigger_event_id, "email already sent for this event; not sending again");
        counters::duplicate(n.kind);
        // The first attempt may have died before announcing; the announcement has a fixed id,
        // so repeating it is harmless.
        let subject = record.subject.unwrap_or_default();
        self.announce_sent(n, &subject, record.updated_at, traceparent)
            .await
    }

    async fn announce_sent(
        &self,
        n: &Notification,
        subject: &str,
        sent_at: chrono::DateTime<Utc>,
        traceparent: Option<&str>,
    ) -> Outcome {
        let event = notify::sent(&self.app_id, n, subject, sent_at);
        match self
            .dapr
            .publish_traced(&self.pubsub, &event, traceparent)
            .await
        {
            Ok(()) => Outcome::Success,
            Err(e) => {
                tracing::warn!(event_id = %n.trigger_event_id, error = %e, "cannot publish notification-sent; will retry (the email is not sent again)");
                counters::retried(n.kind, "publish");
                Outcome::Retry(format!("publishing notification-sent failed: {e}"))
            }
        }
    }

    /// An event that does not decode but whose ids could be read: announce and dead-letter it.
    pub(crate) async fn undecodable(
        &self,
        n: &Notification,
        reason: &str,
        traceparent: Option<&str>,
    ) -> Outcome {
        self.give_up(n, reason, "undecodable", traceparent).await
    }

    /// A permanent failure: announce it and dead-letter the trigger.
    async fn give_up(
        &self,
        n: &Notification,
        reason: &str,
        label: &'static str,
        traceparent: Option<&str>,
    ) -> Outcome {
        let event = notify::failed(&self.app_id, n, reason, Utc::now());
        if let Err(e) = self
            .dapr
            .publish_traced(&self.pubsub, &event, traceparent)
            .await
        {
            tracing::warn!(event_id = %n.trigger_event_id, error = %e, "cannot publish notification-failed; will retry");
            counters::retried(n.kind, "publish");
            return Outcome::Retry(format!("publishing notification-failed failed: {e}"));
        }
        tracing::warn!(event_id = %n.trigger_event_id, event_type = n.kind.as_str(), %reason, "email failed permanently; dead-lettering the event");
        counters::failed(n.kind, label);
        Outcome::Drop(reason.to_owned())
    }

    async fn release(&self, token: ClaimToken) {
        if let Err(e) = self.ledger.release(token).await {
            tracing::debug!(error = %e, "claim not released; it expires on its own");
        }
    }
}
