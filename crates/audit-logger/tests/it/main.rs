//! One test binary for the crate's integration tests (one link instead of one per file keeps the
//! build small and quick); each module is one area, sharing the harness in `support`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod api;
mod authenticity;
mod batch;
mod contention;
mod dead_letters;
mod recovery;
mod replay;
mod tamper;
mod trail;
