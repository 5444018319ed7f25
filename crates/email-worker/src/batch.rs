//! A batch of triggers (a bulk delivery): each email is composed, then the events are claimed in
//! groups, one state transaction per group ([`crate::ledger::Ledger::claim_batch`]), and each
//! group's emails are sent concurrently.
//!
//! A group is as many events as there are send permits free when its first permit comes: the
//! worker waits for one permit, then takes whatever others are free at once. So every claim is
//! taken with a permit at hand for it, as in single processing (a claim taken before its permit
//! would age in the queue for permits, expire there after `CLAIM_TTL`, and let a redelivery send
//! a second time), and a batch never holds more SMTP connections than `MAX_CONCURRENT_SENDS`.
//! While one group sends, the next waits for permits; the batch is answered when every group
//! has finished.
//!
//! Groups run as tasks of their own: a batch whose request the sidecar gives up on (its timeout)
//! still completes the sends it started and marks them, rather than stopping between a send and
//! its sent mark.

use std::collections::VecDeque;
use std::sync::Arc;

use dapr_http::Outcome;
use futures::future::join_all;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument as _;

use crate::compose::{Email, Notification};
use crate::worker::Worker;

/// One event of a batch, ready for processing.
#[derive(Debug)]
pub struct Trigger {
    pub notification: Notification,
    /// The delivery's trace, continued in what the worker publishes for this event.
    pub traceparent: Option<String>,
    /// The span the event's processing is recorded in.
    pub span: tracing::Span,
}

/// A trigger with its email composed, and its place in the batch.
struct Ready {
    position: usize,
    trigger: Trigger,
    email: Email,
}

impl Worker {
    /// Processes a batch; one outcome per trigger, in order.
    pub async fn process_batch(self: &Arc<Self>, triggers: Vec<Trigger>) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = triggers.iter().map(|_| None).collect();
        let mut ready = VecDeque::with_capacity(triggers.len());
        for (position, trigger) in triggers.into_iter().enumerate() {
            let composed = self
                .compose(&trigger.notification, trigger.traceparent.as_deref())
                .instrument(trigger.span.clone())
                .await;
            match composed {
                Ok(email) => ready.push_back(Ready {
                    position,
                    trigger,
                    email,
                }),
                Err(outcome) => outcomes[position] = Some(outcome),
            }
        }

        let mut groups = Vec::new();
        while !ready.is_empty() {
            let Ok(first) = Arc::clone(&self.send_permits).acquire_owned().await else {
                break; // shutting down: the rest are answered RETRY below
            };
            let mut permits = vec![first];
            while permits.len() < ready.len() {
                match Arc::clone(&self.send_permits).try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            let group: Vec<Ready> = ready.drain(..permits.len()).collect();
            let worker = Arc::clone(self);
            groups.push(tokio::spawn(async move {
                worker.claim_and_send(group, permits).await
            }));
        }
        for group in groups {
            match group.await {
                Ok(answered) => {
                    for (position, outcome) in answered {
                        outcomes[position] = Some(outcome);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "a group of emails failed; its events will be redelivered")
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Retry("shutting down".into())))
            .collect()
    }

    /// Claims a group in one transaction, then sends the emails claimed, concurrently, each
    /// holding its permit until its send ends.
    async fn claim_and_send(
        &self,
        group: Vec<Ready>,
        permits: Vec<OwnedSemaphorePermit>,
    ) -> Vec<(usize, Outcome)> {
        let ids: Vec<_> = group
            .iter()
            .map(|r| r.trigger.notification.trigger_event_id)
            .collect();
        let claims = self.ledger.claim_batch(&ids).await;
        let handled =
            group
                .into_iter()
                .zip(permits)
                .zip(claims)
                .map(|((ready, permit), claim)| async move {
                    let Ready {
                        position,
                        trigger,
                        email,
                    } = ready;
                    let outcome = self
                        .after_claim(
                            &trigger.notification,
                            &email,
                            claim,
                            permit,
                            trigger.traceparent.as_deref(),
                        )
                        .instrument(trigger.span.clone())
                        .await;
                    (position, outcome)
                });
        join_all(handled).await
    }
}
