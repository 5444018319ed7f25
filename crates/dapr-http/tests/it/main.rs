//! One test binary for the crate's integration tests (one link instead of one per file keeps the
//! build small and quick); each module is one area, sharing the harness in `support`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod batch;
mod dead_letter_override;
mod health;
mod logging;
mod publish;
mod settings;
mod state;
mod subscribe;
mod with_sidecar;
