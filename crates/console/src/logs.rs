//! The apps' output: a bounded ring of lines with their app, instance, stream and level, fed by
//! the runner as it copies each line to the terminal, and sent live as `event: log`.

use crate::hub::Hub;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub seq: u64,
    pub at: String,
    pub app: String,
    pub instance: String,
    pub stream: LogStream,
    /// `trace`, `debug`, `info`, `warn` or `error` when the line says; `None` otherwise.
    pub level: Option<String>,
    /// The line without terminal colour codes (for JSON logs: the `message` field).
    pub message: String,
    /// The line as the app wrote it, colour codes removed.
    pub line: String,
}

/// Filters of `GET /api/logs`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct LogFilter {
    pub app: Option<String>,
    pub level: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug)]
struct Ring {
    lines: VecDeque<LogLine>,
    next_seq: u64,
}

/// The log ring.
#[derive(Debug)]
pub struct LogStore {
    ring: Mutex<Ring>,
    capacity: usize,
    line_bytes: usize,
    hub: Hub,
}

impl LogStore {
    pub fn new(limits: &crate::Limits, hub: Hub) -> LogStore {
        LogStore {
            ring: Mutex::new(Ring {
                lines: VecDeque::new(),
                next_seq: 1,
            }),
            capacity: limits.logs.max(1),
            line_bytes: limits.log_line_bytes.max(4),
            hub,
        }
    }

    /// Files one line (called from the runner's output threads; never waits on viewers).
    pub fn push(&self, instance: &str, app: &str, stream: LogStream, raw: &str) {
        let mut line = strip_ansi(raw);
        if line.len() > self.line_bytes {
            let mut cut = self.line_bytes;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        let (level, message) = parse(&line);
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = LogLine {
            seq: ring.next_seq,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            app: app.to_owned(),
            instance: instance.to_owned(),
            stream,
            level,
            message,
            line,
        };
        ring.next_seq += 1;
        self.hub.send("log", &entry);
        if ring.lines.len() >= self.capacity {
            ring.lines.pop_front();
        }
        ring.lines.push_back(entry);
    }

    /// Newest first, filtered.
    pub fn list(&self, filter: &LogFilter) -> Vec<LogLine> {
        let limit = filter.limit.unwrap_or(500).min(self.capacity);
        let level = filter.level.as_ref().map(|l| l.to_ascii_lowercase());
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.lines
            .iter()
            .rev()
            .filter(|l| {
                filter
                    .app
                    .as_ref()
                    .is_none_or(|a| &l.app == a || &l.instance == a)
            })
            .filter(|l| level.as_ref().is_none_or(|v| l.level.as_ref() == Some(v)))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Level and message: from a JSON log's `level` and `message` (or `fields.message`, as
/// tracing-subscriber's JSON format nests it), else from the first level word of a text line.
fn parse(line: &str) -> (Option<String>, String) {
    if line.starts_with('{')
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
    {
        let level = value
            .get("level")
            .and_then(|l| l.as_str())
            .map(str::to_ascii_lowercase);
        let message = value
            .get("message")
            .or_else(|| value.get("fields").and_then(|f| f.get("message")))
            .and_then(|m| m.as_str())
            .map_or_else(|| line.to_owned(), str::to_owned);
        return (level, message);
    }
    let level = line
        .split_whitespace()
        .take(4)
        .find_map(
            |word| match word.trim_matches(|c: char| !c.is_ascii_alphabetic()) {
                "TRACE" => Some("trace"),
                "DEBUG" => Some("debug"),
                "INFO" => Some("info"),
                "WARN" | "WARNING" => Some("warn"),
                "ERROR" => Some("error"),
                _ => None,
            },
        )
        .map(str::to_owned);
    (level, line.to_owned())
}

/// Removes terminal escape sequences (`ESC [ ... letter`), which the apps' pretty logs carry.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn levels_come_from_json_and_text_lines() {
        let (level, message) = parse(r#"{"level":"WARN","fields":{"message":"slow"}}"#);
        assert_eq!(level.as_deref(), Some("warn"));
        assert_eq!(message, "slow");
        let (level, _) = parse("2026-01-01T00:00:00Z ERROR task_api: boom");
        assert_eq!(level.as_deref(), Some("error"));
        assert_eq!(parse("plain text").0, None);
        assert_eq!(strip_ansi("\u{1b}[32m INFO\u{1b}[0m ok"), " INFO ok");
    }

    #[test]
    fn the_ring_keeps_the_newest_lines() {
        let limits = crate::Limits {
            logs: 2,
            ..crate::Limits::default()
        };
        let store = LogStore::new(&limits, Hub::new(4));
        for i in 0..3 {
            store.push("a#1", "a", LogStream::Stdout, &format!("line {i}"));
        }
        let lines = store.list(&LogFilter::default());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, "line 2");
        assert_eq!(lines[1].line, "line 1");
    }
}
