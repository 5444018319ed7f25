//! Bulk delivery (`bulkSubscribe`), for every component alike, the way daprd's default bulk
//! subscriber does it (`pkg/runtime/pubsub/default_bulksub.go`): each message the component
//! hands over waits in a batch; the batch goes to the app when it holds `maxMessagesCount`
//! entries or its first entry has waited `maxAwaitDurationMs`; each message's handler call then
//! returns its own entry's result, so the component acks or redelivers entry by entry.
//!
//! daprd flushes on a fixed ticker; here the wait starts with a batch's first entry, so no
//! message waits longer than `maxAwaitDurationMs` and a lone message is not sent early.

mod answer;
mod batch;

pub use answer::{BulkAnswer, EntryStatus, interpret};

use super::deliver::Deliverer;
use crate::components::{HandlerResult, Message, MessageHandler};
use crate::subscriptions::bulk::BulkSettings;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A message waiting for its batch, with the way back to its handler call.
struct Waiting {
    msg: Message,
    done: oneshot::Sender<HandlerResult>,
}

/// The broker callback of a bulk subscription. The batching task ends when the component drops
/// the callback (the subscription closed).
pub(super) fn handler(d: Arc<Deliverer>, settings: BulkSettings) -> MessageHandler {
    let (tx, rx) = mpsc::unbounded_channel::<Waiting>();
    tokio::spawn(collect(d, settings, rx));
    Arc::new(move |msg: Message| {
        let tx = tx.clone();
        Box::pin(async move {
            let (done, result) = oneshot::channel();
            tx.send(Waiting { msg, done })
                .map_err(|_| "bulk delivery stopped".to_string())?;
            result
                .await
                .map_err(|_| "bulk delivery stopped before the batch was settled".to_string())?
        })
    })
}

/// Gathers batches and sends each off on its own task, so the next batch fills meanwhile.
async fn collect(
    d: Arc<Deliverer>,
    settings: BulkSettings,
    mut rx: mpsc::UnboundedReceiver<Waiting>,
) {
    loop {
        let Some(first) = rx.recv().await else { return };
        let deadline = tokio::time::Instant::now() + settings.max_await;
        let mut entries = Vec::with_capacity(settings.max_messages.min(64));
        entries.push(first);
        let mut closed = false;
        while entries.len() < settings.max_messages {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(next)) => entries.push(next),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        tokio::spawn(batch::settle(d.clone(), entries));
        if closed {
            return;
        }
    }
}
