//! One test binary for the crate's integration tests (one link instead of one per file keeps the
//! build small and quick); each module is one area, sharing the harness in `support`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod faults;
mod lease;
mod outage;
mod publishers;
mod redis_backed;
mod reminders;
mod replay;
mod replicas;
