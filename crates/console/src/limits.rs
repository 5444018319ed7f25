//! Every bound of the console in one place: ring sizes, per-viewer backlog, body limits and
//! timeouts. Each store drops its oldest entries once full; nothing grows with the run's length.

use std::time::Duration;

/// The console's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Events kept (newest win).
    pub events: usize,
    /// Delivery records kept per event (a message redelivered forever stops being recorded).
    pub deliveries_per_event: usize,
    /// Tap records waiting to be filed; past this the tap drops and counts.
    pub tap_queue: usize,
    /// Stream items a viewer may fall behind before it loses the oldest (and gets `lagged`).
    pub stream_backlog: usize,
    /// Log lines kept.
    pub logs: usize,
    /// Longest log line kept, in bytes (longer ones are cut).
    pub log_line_bytes: usize,
    /// Traces kept.
    pub traces: usize,
    /// Spans kept per trace.
    pub spans_per_trace: usize,
    /// Largest OTLP/HTTP request body.
    pub otlp_body_bytes: usize,
    /// Most emails listed (newest first).
    pub emails: usize,
    /// Largest `.eml` file read.
    pub email_bytes: u64,
    /// Most state keys listed.
    pub state_keys: usize,
    /// Largest state value shown, in bytes (longer ones are cut).
    pub state_value_bytes: usize,
    /// Calls to audit-logger's API give up after this.
    pub upstream_timeout: Duration,
    /// Largest upstream answer passed on.
    pub upstream_body_bytes: usize,
    /// Most items one list call answers.
    pub max_list: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            events: 2000,
            deliveries_per_event: 64,
            tap_queue: 16 * 1024,
            stream_backlog: 1024,
            logs: 5000,
            log_line_bytes: 8 * 1024,
            traces: 500,
            spans_per_trace: 1000,
            otlp_body_bytes: 8 * 1024 * 1024,
            emails: 500,
            email_bytes: 4 * 1024 * 1024,
            state_keys: 1000,
            state_value_bytes: 256 * 1024,
            upstream_timeout: Duration::from_secs(10),
            upstream_body_bytes: 4 * 1024 * 1024,
            max_list: 5000,
        }
    }
}
