//! One test binary for the whole-system tests: the task flow over the real binaries and the SIGKILL
//! durability run, and the trace that spans them all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod durability_support;

mod durability;
mod scaled;
mod subscriber_crash;
mod task_flow;
mod traces;
