//! One JSON line per recorded entry (`"log": "audit"`) and per signed checkpoint
//! (`"log": "audit-checkpoint"`, [`crate::checkpoint`]), for log shippers.
//!
//! The lines go through their own writer, not through `tracing`: a shipper can take every line
//! of stdout that parses as an object with `"log": "audit"` without knowing the tracing format
//! (which may be `pretty`). A dedicated thread owns the writes; each line is serialised in full
//! first (compact JSON escapes newlines inside strings, so it is exactly one line) and written
//! with a single `write_all` under the stdout lock, so lines of this writer and of the tracing
//! subscriber can follow each other but never interleave. The state store stays the source of
//! truth: a line lost in a crash is still in the trail.

use std::io::Write as _;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::entry::Entry;

/// Lines buffered before the writer thread falls behind and lines are counted as dropped.
const QUEUE: usize = 65_536;

/// Where entry lines go.
pub trait EntrySink: Send + Sync + std::fmt::Debug {
    fn write(&self, trail: &str, entry: &Entry);
    fn write_checkpoint(&self, checkpoint: &Checkpoint);
}

#[derive(Serialize)]
struct CheckpointLine<'a> {
    log: &'static str,
    #[serde(flatten)]
    checkpoint: &'a Checkpoint,
}

/// The line for `checkpoint`, newline included.
pub fn checkpoint_line(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&CheckpointLine {
        log: "audit-checkpoint",
        checkpoint,
    })
    .unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[derive(Serialize)]
struct Line<'a> {
    log: &'static str,
    trail: &'a str,
    #[serde(flatten)]
    entry: &'a Entry,
}

/// The line for `entry` of `trail`, newline included.
pub fn line(trail: &str, entry: &Entry) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&Line {
        log: "audit",
        trail,
        entry,
    })
    .unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Writes lines to stdout from a dedicated thread.
#[derive(Debug)]
pub struct StdoutSink {
    tx: SyncSender<Vec<u8>>,
}

impl StdoutSink {
    /// Starts the writer thread; it ends when the sink is dropped.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        std::thread::Builder::new()
            .name("audit-stdout".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    let mut out = std::io::stdout().lock();
                    if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                        metrics::counter!("audit_log_lines_dropped_total").increment(1);
                    }
                }
            })?;
        Ok(Self { tx })
    }
}

impl StdoutSink {
    fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                metrics::counter!("audit_log_lines_dropped_total").increment(1);
            }
        }
    }
}

impl EntrySink for StdoutSink {
    fn write(&self, trail: &str, entry: &Entry) {
        self.send(line(trail, entry));
    }

    fn write_checkpoint(&self, checkpoint: &Checkpoint) {
        self.send(checkpoint_line(checkpoint));
    }
}

/// Keeps lines in memory (tests).
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    lines: Arc<Mutex<Vec<String>>>,
}

impl MemorySink {
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl EntrySink for MemorySink {
    fn write(&self, trail: &str, entry: &Entry) {
        let text = String::from_utf8_lossy(&line(trail, entry)).into_owned();
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(text);
    }

    fn write_checkpoint(&self, checkpoint: &Checkpoint) {
        let text = String::from_utf8_lossy(&checkpoint_line(checkpoint)).into_owned();
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(text);
    }
}

/// Discards entry lines (`AUDIT_STDOUT=false`). Checkpoints still leave the store: they go to
/// the service's structured log, since a checkpoint kept nowhere proves nothing.
#[derive(Debug, Default)]
pub struct NullSink;

impl EntrySink for NullSink {
    fn write(&self, _: &str, _: &Entry) {}

    fn write_checkpoint(&self, c: &Checkpoint) {
        tracing::info!(
            target: "audit_checkpoint",
            trail = %c.trail, length = c.length, last_hash = %c.last_hash, at = %c.at, mac = %c.mac,
            "audit checkpoint"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::canonical::GENESIS_HASH;
    use crate::entry::{EntryDraft, EntryKind};

    #[test]
    fn a_line_is_one_complete_json_object_even_with_newlines_inside() {
        let entry = EntryDraft {
            kind: EntryKind::DeadLetter,
            entry_id: "x".into(),
            event_id: "x".into(),
            event_type: "task-created".into(),
            topic: "task-created".into(),
            source: "task-api".into(),
            source_mismatch: None,
            trace_id: None,
            task_id: None,
            user_id: None,
            task_version: None,
            occurred_at: None,
            recorded_at: "now".into(),
            correlation_id: None,
            causation_id: None,
            detail: Some("line one\nline two".into()),
            payload: "{\"a\":\"b\\nc\"}".into(),
        }
        .seal(
            &crate::entry::tests::test_key(),
            "trail:task:1",
            0,
            GENESIS_HASH,
        );
        let sink = MemorySink::default();
        sink.write("trail:task:1", &entry);
        let lines = sink.lines();
        let text = &lines[0];
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["log"], "audit");
        assert_eq!(v["trail"], "trail:task:1");
        assert_eq!(v["hash"], entry.hash);
        assert_eq!(v["detail"], "line one\nline two");
    }
}
