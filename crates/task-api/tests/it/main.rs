//! One test binary for the crate's integration tests (one link instead of one per file keeps the
//! build small and quick); each module is one area, sharing the harness in `support`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod api;
mod asymmetric_tokens;
mod calls;
mod cli;
mod concurrency;
mod conformance;
mod crash;
mod limits;
mod outbox;
mod outbox_windows;
mod shipped_resiliency;
