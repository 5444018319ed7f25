//! The consumer side of one `pubsub.redis` subscription: the read loop, the pending-entry
//! reclaimer and the workers that call the handler and acknowledge.

use crate::connection::Connector;
use crate::settings::RedisSettings;
use redis::Value;
use redis::aio::ConnectionLike;
use redis::streams::{StreamClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use sidecar_core::components::{Message, MessageHandler};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

/// Longest server-side wait of one `XREADGROUP`.
const READ_BLOCK: Duration = Duration::from_secs(2);
/// Pause after a failed read before trying again.
const READ_RETRY: Duration = Duration::from_millis(500);

/// One entry on its way to a worker.
#[derive(Debug)]
pub(crate) struct Entry {
    id: String,
    msg: Message,
}

/// State shared by the tasks of one subscription.
pub(crate) struct Subscriber {
    pub(crate) topic: String,
    pub(crate) group: String,
    pub(crate) connector: Arc<Connector>,
    pub(crate) settings: RedisSettings,
    pub(crate) handler: MessageHandler,
    pub(crate) cancel: CancellationToken,
}

/// `XGROUP CREATE <topic> <group> 0 MKSTREAM`; an existing group is not an error.
pub(crate) async fn create_group<C: ConnectionLike + Send>(
    con: &mut C,
    topic: &str,
    group: &str,
) -> redis::RedisResult<()> {
    let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(topic)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(con)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

impl Subscriber {
    fn entry(&self, id: StreamId) -> Entry {
        let data: Vec<u8> = id.get("data").unwrap_or_default();
        let metadata = id
            .get::<String>("metadata")
            .and_then(|m| match serde_json::from_str::<BTreeMap<String, String>>(&m) {
                Ok(map) => Some(map),
                Err(e) => {
                    tracing::warn!(topic = %self.topic, id = %id.id, error = %e, "could not decode the metadata of a stream entry");
                    None
                }
            })
            .unwrap_or_default();
        Entry {
            msg: Message {
                topic: self.topic.clone(),
                data: data.into(),
                metadata,
            },
            id: id.id,
        }
    }

    /// Queues entries for the workers; false when the subscription was cancelled meanwhile.
    async fn enqueue(&self, tx: &mpsc::Sender<Entry>, ids: Vec<StreamId>) -> bool {
        for id in ids {
            let entry = self.entry(id);
            tokio::select! {
                sent = tx.send(entry) => if sent.is_err() { return false },
                _ = self.cancel.cancelled() => return false,
            }
        }
        true
    }

    /// Pauses for `d`; false when cancelled.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.cancel.cancelled() => false,
        }
    }

    /// `XREADGROUP GROUP g g COUNT queueDepth BLOCK .. STREAMS topic >` in a loop.
    pub(crate) async fn read_loop(self: Arc<Self>, tx: mpsc::Sender<Entry>) {
        let block = READ_BLOCK.min(self.settings.read_timeout.max(Duration::from_millis(100)));
        let mut con = None;
        while !self.cancel.is_cancelled() {
            let c = match con.as_mut() {
                Some(c) => c,
                None => match self.connector.dedicated(block).await {
                    Ok(c) => con.insert(c),
                    Err(e) => {
                        tracing::warn!(topic = %self.topic, error = %e, "redis streams: cannot connect for reading");
                        if !self.pause(READ_RETRY).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.group)
                .arg(&self.group)
                .arg("COUNT")
                .arg(self.settings.queue_depth)
                .arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX))
                .arg("STREAMS")
                .arg(&self.topic)
                .arg(">");
            let read: redis::RedisResult<Option<StreamReadReply>> = tokio::select! {
                r = cmd.query_async(c) => r,
                _ = self.cancel.cancelled() => return,
            };
            match read {
                Ok(reply) => {
                    let ids = reply
                        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                        .unwrap_or_default();
                    if !self.enqueue(&tx, ids).await {
                        return;
                    }
                }
                Err(e) if e.code() == Some("NOGROUP") => {
                    tracing::warn!(topic = %self.topic, group = %self.group, "redis streams: consumer group is gone (data loss or deleted stream); recreating it");
                    if let Err(e) = create_group(c, &self.topic, &self.group).await {
                        tracing::error!(topic = %self.topic, error = %e, "redis streams: cannot recreate the consumer group");
                    }
                    if !self.pause(READ_RETRY).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(topic = %self.topic, error = %e, "redis streams: error reading from stream");
                    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                        con = None;
                    }
                    if !self.pause(READ_RETRY).await {
                        return;
                    }
                }
            }
        }
    }

    /// Every `redeliverInterval`, claims entries pending for at least `processingTimeout`.
    pub(crate) async fn reclaim_loop(self: Arc<Self>, tx: mpsc::Sender<Entry>) {
        let timeout = self.settings.processing_timeout;
        let interval = self.settings.redeliver_interval;
        if timeout.is_zero() || interval.is_zero() {
            return;
        }
        loop {
            if let Err(e) = self.reclaim(&tx).await {
                tracing::error!(topic = %self.topic, error = %e, "redis streams: error reclaiming pending entries");
            }
            if !self.pause(interval).await {
                return;
            }
        }
    }

    async fn reclaim(&self, tx: &mpsc::Sender<Entry>) -> redis::RedisResult<()> {
        let min_idle =
            u64::try_from(self.settings.processing_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut con = self.connector.shared().await?;
        loop {
            let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(&self.topic)
                .arg(&self.group)
                .arg("-")
                .arg("+")
                .arg(self.settings.queue_depth)
                .arg(&self.group)
                .query_async(&mut con)
                .await?;
            let due: Vec<String> = pending
                .ids
                .into_iter()
                .filter(|p| u64::try_from(p.last_delivered_ms).unwrap_or(0) >= min_idle)
                .map(|p| p.id)
                .collect();
            if due.is_empty() {
                return Ok(());
            }
            let claimed: StreamClaimReply = redis::cmd("XCLAIM")
                .arg(&self.topic)
                .arg(&self.group)
                .arg(&self.group)
                .arg(min_idle)
                .arg(&due)
                .query_async(&mut con)
                .await?;
            let found: HashSet<&str> = claimed.ids.iter().map(|i| i.id.as_str()).collect();
            let gone: Vec<&String> = due
                .iter()
                .filter(|id| !found.contains(id.as_str()))
                .collect();
            if !gone.is_empty() {
                // Pending entries whose stream entry was trimmed away can never be processed.
                let _: Value = redis::cmd("XACK")
                    .arg(&self.topic)
                    .arg(&self.group)
                    .arg(&gone)
                    .query_async(&mut con)
                    .await?;
            }
            tracing::debug!(topic = %self.topic, group = %self.group, claimed = claimed.ids.len(), "redis streams: redelivering pending entries");
            if claimed.ids.is_empty() || !self.enqueue(tx, claimed.ids).await {
                return Ok(());
            }
        }
    }

    /// Takes entries off the queue, runs the handler and acknowledges successes.
    pub(crate) async fn worker(self: Arc<Self>, rx: Arc<Mutex<mpsc::Receiver<Entry>>>) {
        loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => return,
                next = async { rx.lock().await.recv().await } => next,
            };
            let Some(entry) = next else { return };
            let outcome = tokio::select! {
                r = (self.handler)(entry.msg) => r,
                // Left pending: another consumer of the group claims it after processingTimeout.
                _ = self.cancel.cancelled() => return,
            };
            match outcome {
                Ok(()) => {
                    if let Err(e) = self.ack(&entry.id).await {
                        tracing::error!(topic = %self.topic, id = %entry.id, error = %e, "redis streams: error acknowledging entry");
                    }
                }
                Err(error) => {
                    tracing::debug!(topic = %self.topic, id = %entry.id, %error, "redis streams: entry not processed; left pending for redelivery");
                }
            }
        }
    }

    async fn ack(&self, id: &str) -> redis::RedisResult<()> {
        let mut con = self.connector.shared().await?;
        let _: Value = redis::cmd("XACK")
            .arg(&self.topic)
            .arg(&self.group)
            .arg(id)
            .query_async(&mut con)
            .await?;
        Ok(())
    }
}
